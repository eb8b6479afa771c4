#!/usr/bin/env bash
# Creates (once) the Python virtualenv the tests use to run the real Hugging Face client
# (`hf download`, `huggingface_hub` offline checks) and the JSON Schema validator (`jsonschema`,
# for tests/cli/json_contract.rs), and prints its path. Idempotent.
#
#   scripts/pyenv.sh            # -> target/pyenv (override with AIRLOCK_PYENV=DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${AIRLOCK_PYENV:-$PWD/target/pyenv}
# The version the tests were written against; newer releases are fine too.
spec=${AIRLOCK_HF_HUB:-huggingface_hub==2.4.0}
# The independent validator of the --json schemas (tests/cli/json_contract.rs).
schema_spec=${AIRLOCK_JSONSCHEMA:-jsonschema==4.26.0}
if [ ! -x "$venv/bin/hf" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" "$schema_spec" >&2
fi
if ! "$venv/bin/python" -c 'import jsonschema' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$schema_spec" >&2
fi
echo "$venv"
