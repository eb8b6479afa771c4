#!/usr/bin/env bash
# Benchmarks airlock against the baselines in the same run and prints a Markdown report
# (copy the figures into docs/PERFORMANCE.md). Never part of the test suite.
#
#   scripts/bench.sh                 # ~2 GiB model-like directory, 3 runs each
#   BENCH_RUNS=5 BENCH_DIR=/mnt/fast scripts/bench.sh
#   BENCH_BIG=10G scripts/bench.sh   # also pack+verify one 10 GiB file to show flat memory
#
# Needs: zstd, openssl, sha256sum, GNU time (/usr/bin/time), minisign (apt-get install -y ...).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-3}
chunk=${BENCH_CHUNK:-1GiB}       # airlock --chunk-size
split_size=${BENCH_SPLIT:-1G}    # the same size for split -b
root=${BENCH_DIR:-$(mktemp -d /tmp/airlock-bench.XXXXXX)}
big=${BENCH_BIG:-}

for t in zstd openssl sha256sum /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y zstd openssl coreutils time)" >&2; exit 1; }
done

cargo build --release --quiet
airlock="$PWD/target/release/airlock"
mkdir -p "$root"
trap 'rm -rf "$root/out" "$root/parts"' EXIT

# --- data: two 1 GiB incompressible shards plus JSON/tokenizer files -----------------------
data="$root/model"
if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"; mkdir -p "$data"
    head -c 1073741824 /dev/urandom > "$data/model-00001-of-00002.safetensors"
    head -c 1073741824 /dev/urandom > "$data/model-00002-of-00002.safetensors"
    python3 - "$data" <<'PY'
import json, sys, random
d = sys.argv[1]; random.seed(1)
json.dump({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32}, open(f"{d}/config.json", "w"), indent=2)
vocab = {f"tok_{i}_{random.randrange(10**6)}": i for i in range(128000)}
json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": [f"a{i} b{i}" for i in range(100000)]}}, open(f"{d}/tokenizer.json", "w"))
json.dump({"weight_map": {f"layer.{i}.weight": f"model-0000{1 + i % 2}-of-00002.safetensors" for i in range(2000)}}, open(f"{d}/model.safetensors.index.json", "w"), indent=2)
open(f"{d}/generation_config.json", "w").write('{"max_new_tokens": 512}\n')
PY
    touch "$data/.complete"
fi
payload=$(du -sb --exclude=.complete "$data" | cut -f1)
cat "$data"/* > /dev/null   # warm the page cache: both sides read from memory

"$airlock" keygen --out "$root/k" --unencrypted -q 2>/dev/null || true

# measure NAME CMD... : runs CMD $runs times, records median wall seconds and max RSS (KiB).
declare -A wall rss
measure() {
    local name=$1; shift
    local times=() mems=() i
    for ((i = 0; i < runs; i++)); do
        rm -rf "$root/out" "$root/parts"; mkdir -p "$root/parts"
        [ "$name" = "airlock verify" ] || [ "$name" = "openssl dgst over chunks" ] || [ "$name" = "sha256sum -c over parts" ] && prepare_verify "$name"
        local t0 t1 m
        sync    # flush earlier runs' writes outside the timed region: each run pays only its own
        t0=$(date +%s.%N)
        /usr/bin/time -f '%M' -o "$root/time.txt" "$@" > /dev/null
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 - $t0" | bc -l)")
        mems+=("$(tail -1 "$root/time.txt")")
    done
    wall[$name]=$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (runs + 1) / 2 ))p")
    rss[$name]=$(printf '%s\n' "${mems[@]}" | sort -g | tail -1)
    printf '%-34s median %7.2f s   max RSS %7d KiB\n' "$name" "${wall[$name]}" "${rss[$name]}" >&2
}

# Verification inputs are made once per measurement, outside the timed region.
prepare_verify() {
    case "$1" in
        "airlock verify"|"openssl dgst over chunks")
            "$airlock" pack "$data" --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q ;;
        "sha256sum -c over parts")
            baseline_pack ;;
    esac
}

baseline_pack() {
    tar -cf - -C "$root" model | zstd -T0 -3 -q | split -b "$split_size" - "$root/parts/part-"
    (cd "$root/parts" && sha256sum part-* > SHA256SUMS)
}
export -f baseline_pack
export root split_size

measure "baseline tar|zstd -T0 -3|split + sha256sum" bash -c baseline_pack
measure "airlock pack" "$airlock" pack "$data" --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q
measure "sha256sum -c over parts" bash -c 'cd "$root/parts" && sha256sum -c --quiet SHA256SUMS'
measure "openssl dgst over chunks" bash -c 'openssl dgst -sha256 "$root"/out/chunks/*'
pub="$root/k.pub"
measure "airlock verify" "$airlock" verify "$root/out" --trust "$pub" -q

ratio() { echo "scale=2; $1 / $2" | bc -l; }
cat <<MD

## Results ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), payload $(numfmt --to=iec-i --suffix=B "$payload"), chunk $chunk, median of $runs runs)

| operation | wall (s) | peak RSS (MiB) |
|---|---:|---:|
$(for n in "baseline tar|zstd -T0 -3|split + sha256sum" "airlock pack" "sha256sum -c over parts" "openssl dgst over chunks" "airlock verify"; do
    printf '| %s | %.2f | %.1f |\n' "${n//|/\\|}" "${wall[$n]}" "$(echo "${rss[$n]} / 1024" | bc -l)"
done)

- pack speed-up vs baseline pipeline: **$(ratio "${wall[baseline tar|zstd -T0 -3|split + sha256sum]}" "${wall[airlock pack]}")×** (target ≥ 2×)
- verify vs single-threaded \`openssl dgst -sha256\` over the chunks: **$(ratio "${wall[openssl dgst over chunks]}" "${wall[airlock verify]}")×** as fast (target ≥ 1×)
- verify vs \`sha256sum -c\` over the baseline's parts: **$(ratio "${wall[sha256sum -c over parts]}" "${wall[airlock verify]}")×** as fast
MD

if [ -n "$big" ]; then
    f="$root/big/blob.bin"
    mkdir -p "$root/big"
    [ -f "$f" ] || head -c "$(numfmt --from=iec "$big")" /dev/urandom > "$f"
    rm -rf "$root/out"
    /usr/bin/time -f '%e %M' -o "$root/time.txt" "$airlock" pack "$f" --out "$root/out" --key "$root/k" -q
    read -r pw pm < "$root/time.txt"
    /usr/bin/time -f '%e %M' -o "$root/time.txt" "$airlock" verify "$root/out" --trust "$pub" -q
    read -r vw vm < "$root/time.txt"
    rm -rf "$root/out"
    printf '\n- one %s file: pack %.1f s, peak RSS %.1f MiB; verify %.1f s, peak RSS %.1f MiB\n' \
        "$big" "$pw" "$(echo "$pm / 1024" | bc -l)" "$vw" "$(echo "$vm / 1024" | bc -l)"
fi
