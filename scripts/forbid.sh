#!/usr/bin/env bash
# Fails if src/ still has debugging leftovers or unfinished stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
if grep -rnE 'dbg!\(|todo!\(|unimplemented!\(' src; then
    echo "error: remove dbg!/todo!/unimplemented! from src/" >&2
    exit 1
fi
