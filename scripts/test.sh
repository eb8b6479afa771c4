#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need, then runs
# formatting, lint and every test. This is the command .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- test dependencies (Debian packages) -----------------------------------------------------
# file, man-db: tests/cli/release.rs checks the static binary and shows the packaged man pages.
packages=(minisign zstd docker-registry skopeo openssl python3-venv strace file man-db)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing test dependencies: ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- checks ----------------------------------------------------------------------------------
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
scripts/forbid.sh
# The real Hugging Face client, in a virtualenv (pip, from PyPI): tests find it through AIRLOCK_PYENV.
AIRLOCK_PYENV=$(scripts/pyenv.sh)
export AIRLOCK_PYENV
# The static release binary (tests/cli/release.rs checks it), built before the tests start so
# that its build does not run beside them; the test finds it up to date.
scripts/release.sh --build-only >/dev/null
cargo test --all-targets --locked
