#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need, then runs
# formatting, lint and every test. This is the command .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- test dependencies (Debian packages) -----------------------------------------------------
packages=(minisign zstd docker-registry skopeo openssl)
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
cargo test --all-targets --locked
