#!/usr/bin/env bash
# Runs a static airlock binary inside an EMPTY chroot: no /etc, no /lib, no /proc, no shell, and
# of /dev only the two random devices — the directory holds only the binary and the files it is
# given. What an enclave host of any distribution (or none) offers at the least. keygen, pack,
# verify and import --files must work there; --version first.
#
# Why /dev/random and /dev/urandom: getrandom 0.3 (keys, bundle and staging ids) finds the
# getrandom(2) wrapper with dlsym, which a static binary does not have, and falls back to these
# files (polling /dev/random once). Building with --cfg getrandom_backend="linux_getrandom"
# would call the syscall directly and need no /dev at all.
#
#   scripts/chroot-test.sh BINARY      (as root: chroot(2) needs CAP_SYS_CHROOT)
#
# The environment is empty too (env -i): no HOME, PATH, TMPDIR or locale. Exit 0 when every step
# passed; otherwise the failing step's output and its exit code.
set -euo pipefail
bin=$(realpath "$1")
jail=$(mktemp -d)
trap 'rm -rf "$jail"' EXIT

install -m 0755 "$bin" "$jail/airlock"
mkdir "$jail/dev"
mknod -m 0444 "$jail/dev/random" c 1 8
mknod -m 0444 "$jail/dev/urandom" c 1 9
# The bundle inputs: a small tree with a nested file, an empty file and a binary one.
mkdir -p "$jail/in/model/sub"
printf '{"model_type": "tiny"}' >"$jail/in/model/config.json"
: >"$jail/in/model/empty.txt"
head -c 200000 /dev/urandom >"$jail/in/model/sub/weights.bin"

step() {
    echo "+ airlock $*" >&2
    local code=0
    env -i "$(command -v chroot)" "$jail" /airlock "$@" >"$jail/.out" 2>&1 || code=$?
    if [ "$code" -ne 0 ]; then
        cat "$jail/.out" >&2
        echo "chroot-test: 'airlock $*' failed (exit $code) in the empty chroot $jail" >&2
        exit 1
    fi
    cat "$jail/.out" >&2
}

step --version
step keygen --out /k --unencrypted
step pack /in/model --out /bundle --key /k --chunk-size 64KiB
step verify /bundle --trust /k.pub --state /state
step import /bundle --trust /k.pub --state /state --files /out

# What was imported is what was packed, byte for byte.
diff -r "$jail/in/model" "$jail/out/model" >&2
test -s "$jail/state/audit.jsonl"
# Nothing appeared beside what the steps wrote: no /tmp or /etc was needed. Pack keeps the last
# sequence of each channel (README: Sequence numbers) in its default place for root,
# /var/lib/airlock-pack, and nothing else there.
others=$(cd "$jail" && find var -mindepth 1 2>/dev/null | grep -vxE 'var/lib|var/lib/airlock-pack|var/lib/airlock-pack/.*' || true)
if [ -n "$others" ]; then
    echo "chroot-test: unexpected entries under /var in the chroot: $others" >&2
    exit 1
fi
extra=$(cd "$jail" && ls -A | grep -vxE 'airlock|dev|in|k|k\.pub|bundle|state|out|var|\.out' || true)
if [ -n "$extra" ]; then
    echo "chroot-test: unexpected entries in the chroot: $extra" >&2
    exit 1
fi
echo "chroot-test: --version, keygen, pack, verify and import --files ran in an empty chroot" >&2
