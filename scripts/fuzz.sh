#!/usr/bin/env bash
# Runs airlock's cargo-fuzz targets, one after another, each for SECONDS seconds (default 600).
#
#   scripts/fuzz.sh                 # all targets, 600 s each
#   scripts/fuzz.sh 60 manifest     # one target, 60 s
#
# Targets (fuzz/fuzz_targets/):
#   manifest      airlock::format::Manifest::parse on arbitrary bytes (+ round trip of accepted ones)
#   sign          airlock::sign: Signature::parse (.minisig), PublicKey::parse (.pub text or
#                 inline RW… line), SigningKey::parse (secret key file, no passphrase)
#   chunk_reader  airlock::bundle::reader::BlobReader over attacker-controlled chunk bytes and
#                 segments (stored and zstd), checked against the declared size and digest
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if missing.
# Seeds come from fixtures/golden/*/bundle (manifests, signatures, public keys, every blob's
# segments) and fuzz/seeds/. Corpora grow in fuzz/corpus/<target>, crashes land in
# fuzz/artifacts/<target> (both git-ignored); the script stops at the first crash (exit 1).
# One fuzzer at a time, one job, one worker: the machine is shared. Logs: fuzz/logs/<target>.log.
#
# Recorded run (2026-11-25, `scripts/fuzz.sh 600`, 2-core shared machine, -jobs=1 -workers=1,
# seeds: golden v1+v2 bundles + fuzz/seeds), no crash, timeout or OOM in any target:
#   target        time   execs        exec/s   cov (edges)  features  corpus  peak RSS
#   manifest      601 s   8,283,872   13,783   4450         11775     2432    467 MB
#   sign          601 s  15,594,056   25,946   1441          2748      489    509 MB
#   chunk_reader  601 s   4,120,968    6,856    381          1110       91    465 MB
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(manifest sign chunk_reader)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || { echo "error: needs the nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }

for t in "${TARGETS[@]}"; do cargo +nightly fuzz build -O "$t"; done

python3 - "$PWD" fuzz/corpus <<'PY'
# Seed corpora from the golden bundles: manifests, signatures, public keys, and per blob its
# segments (rebased into one in-memory chunk) in the chunk_reader input layout.
import json, os, struct, sys, glob, hashlib
root, out = sys.argv[1], sys.argv[2]
def put(target, data):
    d = os.path.join(out, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, hashlib.sha1(data).hexdigest()), 'wb').write(data)
for b in sorted(glob.glob(os.path.join(root, 'fixtures/golden/*/bundle'))):
    mb = open(os.path.join(b, 'manifest.json'), 'rb').read()
    put('manifest', mb)
    put('sign', b'\x00' + open(os.path.join(b, 'manifest.json.minisig'), 'rb').read())
    pub = open(os.path.join(b, '..', 'key.pub'), 'rb').read()
    put('sign', b'\x01' + pub)
    put('sign', b'\x01' + pub.splitlines()[1])
    m = json.loads(mb)
    chunks = [open(os.path.join(b, 'chunks', c['name']), 'rb').read() for c in m['chunks']]
    for blob in m['blobs']:
        segs = blob['segments'][:8]
        head, body = bytes([len(segs)]), b''
        for s in segs:
            raw = chunks[s['chunk']][s['offset']:s['offset'] + s['length']]
            head += struct.pack('<BIIBI', 0, len(body), len(raw), 1 if s['encoding'] == 'zstd' else 0, s['size'])
            body += raw
        put('chunk_reader', head + body)
for f in glob.glob(os.path.join(root, 'fuzz/seeds/*/*')):
    t = os.path.basename(os.path.dirname(f))
    if not f.endswith('.md'):
        put(t, open(f, 'rb').read())
PY

mkdir -p fuzz/logs
for t in "${TARGETS[@]}"; do
    case "$t" in
        chunk_reader) max_len=262144 ;;
        manifest) max_len=65536 ;;
        *) max_len=4096 ;;
    esac
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s (log: fuzz/logs/$t.log)"
    rm -f fuzz-0.log
    status=0
    # With -jobs, libFuzzer runs the fuzzer in a child that logs to ./fuzz-0.log.
    cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -workers=1 -max_len="$max_len" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"fuzz/logs/$t.run.log" 2>&1 || status=$?
    [ -f fuzz-0.log ] && mv fuzz-0.log "fuzz/logs/$t.log"
    if [ "$status" != 0 ] || ls "fuzz/artifacts/$t" 2>/dev/null | grep -q .; then
        tail -40 "fuzz/logs/$t.log" "fuzz/logs/$t.run.log" >&2
        echo "error: $t crashed; the input is in fuzz/artifacts/$t/ (minimise: cargo +nightly fuzz tmin -O $t <file>)" >&2
        exit 1
    fi
    grep -E '^(stat::|Done )' "fuzz/logs/$t.log" || true
    grep -E '^#[0-9]+' "fuzz/logs/$t.log" | tail -n 1
    echo "corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs"
done
