#!/usr/bin/env bash
# The whole round trip on fixtures shipped in the repo, with no network:
# keygen -> pack -> inspect -> verify (airlock and stock tools) -> import -> compare; then the
# same over volumes with parity, one volume lost and rebuilt on import.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet
airlock="$PWD/target/debug/airlock"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Connected side: make a signing key (passphrase from AIRLOCK_PASSPHRASE)"
export AIRLOCK_PASSPHRASE="demo passphrase"
# The demo enclave keeps its acceptance state and audit log here (default: /var/lib/airlock).
export AIRLOCK_STATE="$work/enclave/state"
"$airlock" keygen --out "$work/ci.key"

step "Pack a model directory, a patch and a container image into a signed, chunked bundle"
"$airlock" pack fixtures/demo/tiny-model fixtures/demo/patches/raise-max-tokens.patch \
    oci-layout://fixtures/demo/hello-image \
    --out "$work/media/bundle" --key "$work/ci.key" --channel demo --sequence 1 --chunk-size 64KiB
ls -l "$work/media/bundle" "$work/media/bundle/chunks"

step "Officer's review: what crosses the gap"
"$airlock" inspect "$work/media/bundle" --trust "$work/ci.key.pub"

if command -v minisign >/dev/null && command -v sha256sum >/dev/null; then
    step "Officer's manual check with stock tools only"
    minisign -Vm "$work/media/bundle/manifest.json" -p "$work/ci.key.pub"
    (cd "$work/media/bundle" && sha256sum -c SHA256SUMS)
fi

step "Isolated side: verify (writes nothing), then import"
"$airlock" verify "$work/media/bundle" --trust "$work/ci.key.pub"
"$airlock" import "$work/media/bundle" --trust "$work/ci.key.pub" --files "$work/enclave/files" \
    --oci-layout "$work/enclave/images"

step "The enclave recorded the decision in its hash-chained audit log"
"$airlock" audit verify

step "The imported tree is byte-identical to the source"
diff -r fixtures/demo/tiny-model "$work/enclave/files/tiny-model"
cmp fixtures/demo/patches/raise-max-tokens.patch "$work/enclave/files/raise-max-tokens.patch"
find "$work/enclave/files" | sed "s|$work/||" | sort

step "The image landed in an OCI layout with every blob (manifest included) byte-identical"
diff -r fixtures/demo/hello-image/blobs "$work/enclave/images/blobs"
cat "$work/enclave/images/index.json"; echo
if command -v skopeo >/dev/null; then
    skopeo inspect "oci:$work/enclave/images:demo.example/tools/hello:1.0" | head -5
fi

step "Tampering is caught: flip one byte of a chunk"
chunk="$work/media/bundle/chunks/00000000.tar"
old=$(od -An -tu1 -j 30000 -N 1 "$chunk" | tr -d ' ')
printf "\\$(printf %o $(( (old + 1) % 256 )))" | dd of="$chunk" bs=1 seek=30000 conv=notrunc status=none
if "$airlock" verify "$work/media/bundle" --trust "$work/ci.key.pub"; then
    echo "tampering was NOT detected" >&2; exit 1
else
    echo "(exit code $? = bundle rejected, as expected)"
fi
step "Bigger than one medium: the same sources over volumes, with a parity volume"
"$airlock" pack fixtures/demo/tiny-model fixtures/demo/patches/raise-max-tokens.patch \
    --out "$work/media/multi" --key "$work/ci.key" --channel demo-volumes --sequence 1 \
    --chunk-size 64KiB --volume-size 160KiB --parity 1
for vol in "$work"/media/multi/vol-*; do
    # Each volume checks alone (exit 4: intact, the others still to check).
    rc=0; "$airlock" verify "$vol" --trust "$work/ci.key.pub" --quiet || rc=$?
    [ "$rc" -eq 4 ] || { echo "volume $vol: exit $rc" >&2; exit 1; }
    echo "$(basename "$vol"): intact"
done

step "A lost data volume is rebuilt from parity while importing"
rm -rf "$work/media/multi/vol-002"
"$airlock" import "$work/media/multi" --trust "$work/ci.key.pub" --files "$work/enclave/volumes"
diff -r fixtures/demo/tiny-model "$work/enclave/volumes/tiny-model"

echo; echo "demo OK"
