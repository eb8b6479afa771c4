#!/usr/bin/env bash
# Benchmarks airlock against the baselines in the same run and prints a Markdown report
# (copy the figures into docs/PERFORMANCE.md). Never part of the test suite.
#
#   scripts/bench.sh                 # ~2 GiB model-like directory and a ~1 GiB image, 3 runs each
#   BENCH_RUNS=5 BENCH_DIR=/mnt/fast scripts/bench.sh
#   BENCH_BIG=10G scripts/bench.sh   # also pack+verify one 10 GiB file to show flat memory
#   BENCH_MODELS=0 BENCH_IMAGE_MB=64 scripts/bench.sh   # only the image part, with a small image
#   BENCH_IMAGES=0 scripts/bench.sh  # only the model part
#   BENCH_MODELS=0 BENCH_IMAGES=0 scripts/bench.sh  # only the Hugging Face part (BENCH_HF=0 skips it)
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_IMPORT=0 scripts/bench.sh  # only the hostile
#                                    # manifests (BENCH_HOSTILE=0 skips them)
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 scripts/bench.sh  # only pack at the
#                                    # write floor (BENCH_PACK_FLOOR=0 skips it; BENCH_PACK_BIG=10G
#                                    # adds the peak RSS of one 10 GiB file)
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 scripts/bench.sh  # only verify on
#                                    # every core (BENCH_PIECES=0 skips it; BENCH_PIECES_MB, BENCH_SMALL_FILES)
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 BENCH_INTERRUPT=1 scripts/bench.sh
#                                    # only the stop latency of pack under SIGINT (off by default)
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 BENCH_PACK_FLOOR=0 BENCH_PIECES=0 scripts/bench.sh
#                                    # only the staged import (issue 10; BENCH_IMPORT=0 skips it), see bench_import
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 BENCH_PACK_FLOOR=0 BENCH_PIECES=0 BENCH_IMPORT=0 BENCH_STATIC=1 scripts/bench.sh
#                                    # only the static release binary against the dynamic one (issue 11)
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 BENCH_PACK_FLOOR=0 BENCH_PIECES=0 BENCH_IMPORT=0 BENCH_VOLUMES=1 scripts/bench.sh
#                                    # only volumes and parity (issue 12), see bench_volumes
#
# The image part builds an 8-layer OCI image (scripts/bench-image.py), serves it from a local
# docker-registry and times `airlock pack oci://…` against `skopeo copy docker://… oci:…` (and
# skopeo + the tar|zstd|split baseline), then `airlock import --registry` against
# `skopeo copy oci:… docker://…`, each run into a fresh, empty destination registry.
#
# Needs: zstd, openssl, sha256sum, bc, GNU time (/usr/bin/time); for images also skopeo,
# docker-registry and python3 (apt-get install -y ...).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-3}
chunk=${BENCH_CHUNK:-1GiB}       # airlock --chunk-size
split_size=${BENCH_SPLIT:-1G}    # the same size for split -b
root=${BENCH_DIR:-$(mktemp -d /tmp/airlock-bench.XXXXXX)}
big=${BENCH_BIG:-}
models=${BENCH_MODELS:-1}
images=${BENCH_IMAGES:-1}
image_mb=${BENCH_IMAGE_MB:-1024}  # MiB of layer content (8 layers)

for t in zstd openssl sha256sum bc /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y zstd openssl coreutils bc time)" >&2; exit 1; }
done
if [ "$images" = 1 ]; then
    for t in skopeo docker-registry python3; do
        command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y skopeo docker-registry python3, or BENCH_IMAGES=0)" >&2; exit 1; }
    done
fi

cargo build --release --quiet
airlock="$PWD/target/release/airlock"
mkdir -p "$root"
# The benchmark's enclave state and audit log (imports record their acceptance there).
export AIRLOCK_STATE="$root/state"

# Registries this script started (NAME -> PID, address); each has its own config and storage
# under $root/reg-NAME, listens on 127.0.0.1:0 and is stopped by PID on exit.
declare -A reg_pid reg_addr
cleanup() {
    local n
    for n in "${!reg_pid[@]}"; do stop_registry "$n"; done
    rm -rf "$root/out" "$root/parts" "$root"/reg-* "$root/img" "$root/hf"
    if [ -n "${hf_pid:-}" ]; then kill "$hf_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

"$airlock" keygen --out "$root/k" --unencrypted -q 2>/dev/null || true
pub="$root/k.pub"

# measure NAME CMD... : runs CMD $runs times, records median wall seconds and max RSS (KiB).
declare -A wall rss
measure() {
    local name=$1; shift
    local times=() mems=() i
    for ((i = 0; i < runs; i++)); do
        rm -rf "$root/out" "$root/parts"; mkdir -p "$root/parts"
        prepare "$name"
        local t0 t1 m
        sync    # flush earlier runs' writes outside the timed region: each run pays only its own
        if [ "${cold:-0}" = 1 ]; then drop_caches; fi   # cold mode (bench_import sets it)
        t0=$(date +%s.%N)
        /usr/bin/time -f '%M' -o "$root/time.txt" "$@" > /dev/null
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 - $t0" | bc -l)")
        mems+=("$(tail -1 "$root/time.txt")")
    done
    wall[$name]=$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (runs + 1) / 2 ))p")
    rss[$name]=$(printf '%s\n' "${mems[@]}" | sort -g | tail -1)
    printf '%-44s median %7.2f s   max RSS %7d KiB   (runs: %s)\n' "$name" "${wall[$name]}" "${rss[$name]}" \
        "$(printf '%.2f ' "${times[@]}")" >&2
}

# Per-run inputs, made outside the timed region.
prepare() {
    case "$1" in
        "airlock verify"|"openssl dgst over chunks")
            "$airlock" pack "$data" --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q ;;
        "sha256sum -c over parts")
            baseline_pack ;;
        "hf: cp -a of the hf download cache"|"hf: cp -a + sha256sum of every blob + sync")
            mkdir -p "$root/out" ;;
        "image: skopeo copy docker:// → oci:"|"image: skopeo copy + tar|zstd -T0 -3|split + sha256sum")
            mkdir -p "$root/out" ;;   # skopeo wants the layout's parent to exist
        "image: airlock import"|"image: skopeo copy oci: → docker://")
            # A fresh, empty destination: nothing is skipped as already present.
            stop_registry dst
            start_registry dst
            echo "${reg_addr[dst]}" > "$root/img/dst.addr" ;;
    esac
}

ratio() { printf %.2f "$(echo "$1 / $2" | bc -l)"; }
# met A B LIMIT: "met" if A / B ≤ LIMIT, else "missed by N%" (how far A / B is above LIMIT)
met() {
    if [ "$(echo "$1 / $2 <= $3" | bc -l)" = 1 ]; then echo "**met**"
    else printf '**missed** by %.0f%%' "$(echo "($1 / $2 / $3 - 1) * 100" | bc -l)"; fi
}
mib() { echo "${rss[$1]} / 1024" | bc -l; }
# table NAME... : Markdown rows "| name | wall | peak RSS |"
table() {
    local n
    echo "| operation | wall (s) | peak RSS (MiB) |"
    echo "|---|---:|---:|"
    for n in "$@"; do printf '| %s | %.2f | %.1f |\n' "${n//|/\\|}" "${wall[$n]}" "$(mib "$n")"; done
}

# --- models: two 1 GiB incompressible shards plus JSON/tokenizer files ---------------------
baseline_pack() {
    tar -cf - -C "$root" model | zstd -T0 -3 -q | split -b "$split_size" - "$root/parts/part-"
    (cd "$root/parts" && sha256sum part-* > SHA256SUMS)
}
export -f baseline_pack
export root split_size

# BENCH_MODEL_SIZE (default 2Gi, numfmt syntax: 64Mi, 512Mi) sets the two shards' total; other sizes
# live in model-SIZE/.
model_size=${BENCH_MODEL_SIZE:-2Gi}
model_data() {
    local shard
    shard=$(( $(numfmt --from=auto "$model_size") / 2 ))
    data="$root/model"
    [ "$shard" = 1073741824 ] || data="$root/model-$model_size"
    if [ ! -f "$data/.complete" ]; then
        rm -rf "$data"; mkdir -p "$data"
        head -c "$shard" /dev/urandom > "$data/model-00001-of-00002.safetensors"
        head -c "$shard" /dev/urandom > "$data/model-00002-of-00002.safetensors"
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
}

bench_models() {
    model_data
    local payload
    payload=$(du -sb --exclude=.complete "$data" | cut -f1)
    cat "$data"/* > /dev/null   # warm the page cache: both sides read from memory

    measure "baseline tar|zstd -T0 -3|split + sha256sum" bash -c baseline_pack
    measure "airlock pack" "$airlock" pack "$data" --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q
    measure "sha256sum -c over parts" bash -c 'cd "$root/parts" && sha256sum -c --quiet SHA256SUMS'
    measure "openssl dgst over chunks" bash -c 'openssl dgst -sha256 "$root"/out/chunks/*'
    measure "airlock verify" "$airlock" verify "$root/out" --trust "$pub" -q

    cat <<MD

## Results ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), payload $(numfmt --to=iec-i --suffix=B "$payload"), chunk $chunk, median of $runs runs)

$(table "baseline tar|zstd -T0 -3|split + sha256sum" "airlock pack" "sha256sum -c over parts" "openssl dgst over chunks" "airlock verify")

- pack speed-up vs baseline pipeline: **$(ratio "${wall[baseline tar|zstd -T0 -3|split + sha256sum]}" "${wall[airlock pack]}")×** (target ≥ 2×)
- verify vs single-threaded \`openssl dgst -sha256\` over the chunks: **$(ratio "${wall[openssl dgst over chunks]}" "${wall[airlock verify]}")×** as fast (target ≥ 1×)
- verify vs \`sha256sum -c\` over the baseline's parts: **$(ratio "${wall[sha256sum -c over parts]}" "${wall[airlock verify]}")×** as fast
MD

    if [ -n "$big" ]; then echo; big_blob; fi
}

# --- pack at the write floor (issue 10): airlock pack vs cat SRC > DST && sync --------------
# Same model directory, runs alternating (airlock, cat+sync, the tar|zstd|split baseline), each
# after a `sync`; warm (page cache holds the source) and, where permitted, cold (caches dropped
# before each run: `sync; echo 3 > /proc/sys/vm/drop_caches`). Also: airlock's user+system CPU
# seconds, the kernel's own write patterns for the same bytes (dd 1 MiB vs 8 MiB writes + sync,
# and one fsync at the end), and with BENCH_PACK_BIG=10G the peak RSS of packing one such file
# (random data, made once).
floor_run() {   # floor_run LABEL COLD CMD... : appends "wall user sys rss" to $root/floor-LABEL
    local label=$1 cold=$2; shift 2
    rm -rf "$root/out" "$root/parts" "$root/cat.out"; mkdir -p "$root/parts"
    sync
    if [ "$cold" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
    /usr/bin/time -f '%e %U %S %M' -o "$root/time.txt" "$@" > /dev/null
    tail -1 "$root/time.txt" >> "$root/floor-$label"
}
floor_median() { sort -g -k"$2" "$root/floor-$1" | awk -v k="$2" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }
bench_pack_floor() {
    model_data
    local payload cold_ok=0 i mode label
    payload=$(du -sb --exclude=.complete "$data" | cut -f1)
    if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then cold_ok=1; fi
    rm -f "$root"/floor-*
    for mode in warm cold; do
        [ "$mode" = cold ] && [ "$cold_ok" = 0 ] && continue
        local c=0; [ "$mode" = cold ] && c=1
        [ "$mode" = warm ] && cat "$data"/* > /dev/null
        for ((i = 0; i < runs; i++)); do
            floor_run "$mode-airlock" $c "$airlock" pack "$data" --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q
            floor_run "$mode-cat" $c bash -c 'cat "$0"/* > "$1/cat.out" && sync' "$data" "$root"
            floor_run "$mode-shell" $c bash -c baseline_pack
        done
    done
    # Kernel write patterns for the same bytes (no airlock involved): write size, sync policy.
    local f
    for f in 1M 8M; do
        for ((i = 0; i < runs; i++)); do
            floor_run "dd-$f" 0 bash -c 'cat "$0"/* | dd of="$1/cat.out" bs="$2" iflag=fullblock status=none && sync' "$data" "$root" "$f"
        done
    done
    for ((i = 0; i < runs; i++)); do
        floor_run "dd-fsync" 0 bash -c 'cat "$0"/* | dd of="$1/cat.out" bs=1M iflag=fullblock conv=fsync status=none' "$data" "$root"
    done
    rm -f "$root/cat.out"
    cat <<MD

## Pack at the write floor ($(date -u +%Y-%m-%d), $(nproc) cores, payload $(numfmt --to=iec-i --suffix=B "$payload"), chunk $chunk, median of $runs alternating runs)

| run | airlock pack (s) | cat SRC > DST && sync (s) | tar\|zstd -T0 -3\|split + sha256sum (s) | pack / cat | pack / shell | airlock user+sys (s) | airlock peak RSS (MiB) |
|---|---:|---:|---:|---:|---:|---:|---:|
MD
    for mode in warm cold; do
        [ -f "$root/floor-$mode-airlock" ] || continue
        local a cc sh u s m
        a=$(floor_median "$mode-airlock" 1); cc=$(floor_median "$mode-cat" 1); sh=$(floor_median "$mode-shell" 1)
        u=$(floor_median "$mode-airlock" 2); s=$(floor_median "$mode-airlock" 3); m=$(floor_median "$mode-airlock" 4)
        printf '| %s | %.2f | %.2f | %.2f | **%s×** | **%s×** | %.2f | %.1f |\n' "$mode" "$a" "$cc" "$sh" \
            "$(ratio "$a" "$cc")" "$(ratio "$a" "$sh")" "$(echo "$u + $s" | bc -l)" "$(echo "$m / 1024" | bc -l)"
    done
    [ "$cold_ok" = 1 ] || echo "- cold runs skipped: dropping the page cache is not permitted here"
    printf -- '- kernel write patterns, same bytes: `dd bs=1M` + sync %.2f s, `dd bs=8M` + sync %.2f s, `dd bs=1M conv=fsync` %.2f s\n' \
        "$(floor_median dd-1M 1)" "$(floor_median dd-8M 1)" "$(floor_median dd-fsync 1)"
    if [ -n "${BENCH_PACK_BIG:-}" ]; then
        local big_f="$root/big/floor.bin"
        mkdir -p "$root/big"
        [ -f "$big_f" ] || head -c "$(numfmt --from=iec "$BENCH_PACK_BIG")" /dev/urandom > "$big_f"
        floor_run big 0 "$airlock" pack "$big_f" --out "$root/out" --key "$root/k" -q
        rm -rf "$root/out"
        printf -- '- one %s file: pack %.1f s, peak RSS %.1f MiB\n' "$BENCH_PACK_BIG" \
            "$(floor_median big 1)" "$(echo "$(floor_median big 4) / 1024" | bc -l)"
    fi
}

# --- images: an 8-layer OCI image in a local registry ---------------------------------------
# start_registry NAME: a docker-registry with its own config and empty storage in $root/reg-NAME
# (never the system's config), on a free loopback port read from its "listening on" log line.
start_registry() {
    local name=$1 d="$root/reg-$1" i addr=
    rm -rf "$d"; mkdir -p "$d/data"
    cat > "$d/config.yml" <<YML
version: 0.1
log: {level: info, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $d/data}
  maintenance: {uploadpurging: {enabled: false}}
http:
  addr: 127.0.0.1:0
  secret: airlock-bench
YML
    docker-registry serve "$d/config.yml" > /dev/null 2> "$d/log" &
    reg_pid[$name]=$!
    for ((i = 0; i < 400; i++)); do
        addr=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$d/log" | head -1 | cut -d' ' -f3) || true
        [ -n "$addr" ] && break
        kill -0 "${reg_pid[$name]}" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "docker-registry $name did not start:" >&2; cat "$d/log" >&2; exit 1; }
    reg_addr[$name]=$addr
}
stop_registry() {
    local pid=${reg_pid[$1]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "reg_pid[$1]" "reg_addr[$1]"
    rm -rf "$root/reg-$1"
}

# The core baseline for images: what an officer would do without airlock.
image_baseline_pack() {
    skopeo copy --quiet --src-tls-verify=false "docker://$src/bench/img:1" "oci:$root/out/layout:img"
    tar -cf - -C "$root/out" layout | zstd -T0 -3 -q | split -b "$split_size" - "$root/parts/part-"
    (cd "$root/parts" && sha256sum part-* > SHA256SUMS)
}
export -f image_baseline_pack

bench_images() {
    local layout="$root/image-${image_mb}MiB" top payload
    if [ ! -f "$layout/.complete" ]; then
        rm -rf "$layout"
        python3 scripts/bench-image.py "$layout" "$image_mb" 2>/dev/null > "$layout.digest"
        touch "$layout/.complete"
    fi
    top=$(cat "$layout.digest")
    payload=$(du -sb "$layout/blobs" | cut -f1)
    mkdir -p "$root/img"

    start_registry src
    src=${reg_addr[src]}
    export src
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$layout:img" "docker://$src/bench/img:1"
    find "$root/reg-src/data" -type f -exec cat {} + > /dev/null   # warm: served from memory

    # Leg 1: registry → bundle (airlock) / registry → OCI layout (skopeo) / + tar|zstd|split.
    measure "image: airlock pack oci://" "$airlock" pack "oci://$src/bench/img:1" --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q
    measure "image: skopeo copy docker:// → oci:" skopeo copy --quiet --src-tls-verify=false "docker://$src/bench/img:1" "oci:$root/out/layout:img"
    measure "image: skopeo copy + tar|zstd -T0 -3|split + sha256sum" bash -c image_baseline_pack

    # Inputs of leg 2, made once: the bundle and the layout the two tools push from.
    "$airlock" pack "oci://$src/bench/img:1" --out "$root/img/bundle" --key "$root/k" --chunk-size "$chunk" -q
    skopeo copy --quiet --src-tls-verify=false "docker://$src/bench/img:1" "oci:$root/img/layout:img"
    [ "$(skopeo inspect --raw "oci:$root/img/layout:img" | sha256sum | cut -d' ' -f1)" = "${top#sha256:}" ] \
        || { echo "skopeo's layout holds another manifest than the source" >&2; exit 1; }
    find "$root/img/bundle" "$root/img/layout" -type f -exec cat {} + > /dev/null
    stop_registry src   # idle from here on: keep its 1 GiB out of the page cache's way

    # Leg 2: bundle → registry (airlock) / OCI layout → registry (skopeo); a fresh registry each run.
    export airlock pub
    measure "image: airlock verify (import's first pass)" "$airlock" verify "$root/img/bundle" --trust "$pub" -q
    measure "image: airlock import" bash -c 'exec "$airlock" import "$root/img/bundle" --trust "$pub" --registry "$(cat "$root/img/dst.addr")/mirror" --strip-host -q'
    check_dst "airlock import"
    measure "image: skopeo copy oci: → docker://" bash -c 'exec skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$root/img/layout:img" "docker://$(cat "$root/img/dst.addr")/mirror/bench/img:1"'
    check_dst "skopeo copy"
    stop_registry dst

    cat <<MD

## Images ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), one linux/amd64 image, 8 gzip layers, $(numfmt --to=iec-i --suffix=B "$payload"), local docker-registry $(docker-registry --version | awk '{print $3}'), $(skopeo --version), chunk $chunk, median of $runs runs)

$(table "image: airlock pack oci://" "image: skopeo copy docker:// → oci:" "image: skopeo copy + tar|zstd -T0 -3|split + sha256sum" "image: airlock verify (import's first pass)" "image: airlock import" "image: skopeo copy oci: → docker://")

- pack from the registry: **$(ratio "${wall[image: skopeo copy docker:// → oci:]}" "${wall[image: airlock pack oci://]}")×** skopeo's speed (skopeo time / airlock time; target ≥ 1×), **$(ratio "${wall[image: skopeo copy + tar|zstd -T0 -3|split + sha256sum]}" "${wall[image: airlock pack oci://]}")×** the core baseline's
- import into a registry: airlock takes **$(ratio "${wall[image: airlock import]}" "${wall[image: skopeo copy oci: → docker://]}")×** skopeo's time (airlock time / skopeo time; target ≤ 0.8×, issue 10), i.e. **$(ratio "${wall[image: skopeo copy oci: → docker://]}" "${wall[image: airlock import]}")×** skopeo's speed (target ≥ 1.25×): $(met "${wall[image: airlock import]}" "${wall[image: skopeo copy oci: → docker://]}" 0.8)
- peak RSS: pack $(printf %.1f "$(mib "image: airlock pack oci://")") MiB vs skopeo $(printf %.1f "$(mib "image: skopeo copy docker:// → oci:")") MiB; import $(printf %.1f "$(mib "image: airlock import")") MiB vs skopeo $(printf %.1f "$(mib "image: skopeo copy oci: → docker://")") MiB
MD
}

# check_dst WHO: the last run's push left the source manifest, byte for byte, in the destination.
check_dst() {
    local got
    got=$(skopeo inspect --raw --tls-verify=false "docker://${reg_addr[dst]}/mirror/bench/img:1" | sha256sum | cut -d' ' -f1)
    [ "$got" = "${top#sha256:}" ] || { echo "$1 left another manifest ($got) than ${top}" >&2; exit 1; }
}

# --- Hugging Face: the same 2 GiB model served by the test suite's Hub emulator -------------
# Leg 1: airlock pack hf:// vs hf download (which only downloads) into a fresh cache.
# Leg 2: airlock import --hf-cache vs cp -a of the cache hf download made.
# hf_setup: the Hub emulator serving the model directory (PID in $hf_pid, HF_ENDPOINT exported),
# and the inputs of the import legs, made once: a bundle ($root/hf/bundle) and the cache
# hf download builds ($root/hf/ref).
# start_hub EMULATOR DIR ORG/NAME LOG: the Hub emulator serving DIR as ORG/NAME in the
# background (its PID in $hub_pid), HF_ENDPOINT exported once it listens.
start_hub() {
    "$1" "$2" "$3" > "$4" 2>&1 &
    hub_pid=$!
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q '^HF_ENDPOINT=' "$4" 2>/dev/null && break
        sleep 0.1
    done
    HF_ENDPOINT=$(sed -n 's/^HF_ENDPOINT=//p' "$4")
    [ -n "$HF_ENDPOINT" ] || { echo "the Hub emulator did not start: $(cat "$4")" >&2; exit 1; }
    export HF_ENDPOINT
}
hf_setup() {
    model_data
    local emu
    venv=$(scripts/pyenv.sh)
    cargo build --release --quiet --example hub_emulator
    emu="$PWD/target/release/examples/hub_emulator"
    mkdir -p "$root/hf"
    start_hub "$emu" "$data" bench/model "$root/hf/emulator.out"
    hf_pid=$hub_pid HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_DISABLE_UPDATE_CHECK=1
    export HF_HOME="$root/hf/home" venv airlock pub chunk
    cat "$data"/* > /dev/null
    # The inputs of leg 2, made once: a bundle, and the cache hf download builds.
    rm -rf "$root/hf/bundle" "$root/hf/ref"
    "$airlock" pack hf://bench/model --out "$root/hf/bundle" --key "$root/k" --chunk-size "$chunk" -q
    "$venv/bin/hf" download bench/model --cache-dir "$root/hf/ref" > /dev/null
}

bench_hf() {
    local payload
    hf_setup
    payload=$(du -sb "$data" | cut -f1)

    measure "hf: airlock pack hf://" "$airlock" pack hf://bench/model --out "$root/out" --key "$root/k" --chunk-size "$chunk" -q
    measure "hf: hf download (fresh cache)" bash -c 'exec "$venv/bin/hf" download bench/model --cache-dir "$root/out/cache" > /dev/null'
    measure "hf: airlock import --hf-cache" "$airlock" import "$root/hf/bundle" --trust "$pub" --hf-cache="$root/out/cache" -q
    measure "hf: cp -a of the hf download cache" cp -a "$root/hf/ref" "$root/out/cache"
    measure "hf: cp -a + sha256sum of every blob + sync" bash -c 'cp -a "$root/hf/ref" "$root/out/cache" && sha256sum "$root"/out/cache/*/blobs/* > /dev/null && sync'
    measure "hf: airlock verify (import's first pass)" "$airlock" verify "$root/hf/bundle" --trust "$pub" -q
    kill "$hf_pid" 2>/dev/null; wait "$hf_pid" 2>/dev/null || true

    cat <<MD

## Hugging Face ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), repo of $(numfmt --to=iec-i --suffix=B "$payload") served by examples/hub_emulator, huggingface_hub $("$venv/bin/python" -c 'import huggingface_hub as h; print(h.__version__)'), chunk $chunk, median of $runs runs)

$(table "hf: airlock pack hf://" "hf: hf download (fresh cache)" "hf: airlock verify (import's first pass)" "hf: airlock import --hf-cache" "hf: cp -a of the hf download cache" "hf: cp -a + sha256sum of every blob + sync")

- pack vs hf download: airlock takes **$(ratio "${wall[hf: airlock pack hf://]}" "${wall[hf: hf download (fresh cache)]}")×** hf download's time (target ≤ 1.2×)
- import vs cp -a: airlock takes **$(ratio "${wall[hf: airlock import --hf-cache]}" "${wall[hf: cp -a of the hf download cache]}")×** cp -a's time (target ≤ 1.5×); vs a checked, durable copy (cp -a + sha256sum + sync): **$(ratio "${wall[hf: airlock import --hf-cache]}" "${wall[hf: cp -a + sha256sum of every blob + sync]}")×**
- peak RSS: pack $(printf %.1f "$(mib "hf: airlock pack hf://")") MiB vs hf download $(printf %.1f "$(mib "hf: hf download (fresh cache)")") MiB; import $(printf %.1f "$(mib "hf: airlock import --hf-cache")") MiB vs cp -a $(printf %.1f "$(mib "hf: cp -a of the hf download cache")") MiB
MD
}

# --- hostile manifests: the largest the limits allow, unsigned, untrusted, validly signed ----
# The bundles come from the test suite's generator (tests/cli/sec_verify.rs). Baselines: what any
# checker must at least do with those bytes — hash them (sha256sum), check the signature
# (minisign -V), and for the signed one also parse them (python3's json).
bench_hostile() {
    local fx="$root/hostile"
    rm -rf "$fx"; mkdir -p "$fx"
    AIRLOCK_SEC_FIXTURES="$fx" cargo test --quiet --locked --test cli sec_verify::write_measurement_bundles > /dev/null
    local b
    for b in unsigned-64m untrusted-64m signed-64m; do
        measure "hostile: airlock verify $b" bash -c '"$0" verify "$1" --trust "$2" -q 2>/dev/null; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 3 ]' \
            "$airlock" "$fx/$b" "$fx/k.pub"
        measure "hostile: sha256sum manifest ($b)" sha256sum "$fx/$b/manifest.json"
    done
    measure "hostile: minisign -V (signed-64m)" minisign -Vqm "$fx/signed-64m/manifest.json" -p "$fx/k.pub"
    measure "hostile: minisign -V + python json.load (signed-64m)" bash -c \
        'minisign -Vqm "$0/manifest.json" -p "$1" && python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$0/manifest.json"' \
        "$fx/signed-64m" "$fx/k.pub"
    cat <<MD

## Hostile manifests ($(date -u +%Y-%m-%d), $(nproc) cores, 64 MiB manifests of 15,627 entries 128 levels deep, median of $runs runs)

$(table "hostile: airlock verify unsigned-64m" "hostile: sha256sum manifest (unsigned-64m)" "hostile: airlock verify untrusted-64m" "hostile: sha256sum manifest (untrusted-64m)" "hostile: airlock verify signed-64m" "hostile: minisign -V (signed-64m)" "hostile: minisign -V + python json.load (signed-64m)")

- rejecting an unsigned manifest: **$(ratio "${wall[hostile: airlock verify unsigned-64m]}" "${wall[hostile: sha256sum manifest (unsigned-64m)]}")×** sha256sum's time over the same bytes
- rejecting an untrusted one: **$(ratio "${wall[hostile: airlock verify untrusted-64m]}" "${wall[hostile: sha256sum manifest (untrusted-64m)]}")×** sha256sum's time
- verifying the signed one (signature, parse, validation, chunks): **$(ratio "${wall[hostile: airlock verify signed-64m]}" "${wall[hostile: minisign -V + python json.load (signed-64m)]}")×** minisign -V + a JSON parse
MD
    rm -rf "$fx"
}


# --- verify on every core (format v3 piece digests), fmt ----------------------------------
# A BENCH_PIECES_MB (default 2048) MiB incompressible file packed into one chunk and into
# 64 MiB chunks; `airlock verify` of each against single-threaded `openssl dgst -sha256` over
# the same chunk files, alternating run by run (warm page cache). Then 100,000 files of 512
# bytes in 1,000 directories (BENCH_SMALL_FILES): manifest bytes per file, and verify's time
# and peak RSS.
bench_verify_pieces() {
    local mb=${BENCH_PIECES_MB:-2048} nsmall=${BENCH_SMALL_FILES:-100000} d="$root/pieces" i
    mkdir -p "$d/src"
    head -c "$((mb << 20))" /dev/urandom > "$d/src/payload.bin"
    "$airlock" pack "$d/src" --out "$d/one" --key "$root/k" --chunk-size "$((mb + 64))MiB" -q
    "$airlock" pack "$d/src" --out "$d/many" --key "$root/k" --chunk-size 64MiB -q
    rm -rf "$d/src"
    local -a t_one t_many t_ssl_one t_ssl_many
    timed() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
    cat "$d"/one/chunks/* "$d"/many/chunks/* > /dev/null    # warm
    for ((i = 0; i < runs; i++)); do
        t_one+=("$(timed "$airlock" verify "$d/one" --trust "$pub" -q)")
        t_ssl_one+=("$(timed openssl dgst -sha256 "$d"/one/chunks/*)")
        t_many+=("$(timed "$airlock" verify "$d/many" --trust "$pub" -q)")
        t_ssl_many+=("$(timed openssl dgst -sha256 "$d"/many/chunks/*)")
    done
    med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
    local one ssl1 many ssl2
    one=$(med "${t_one[@]}"); ssl1=$(med "${t_ssl_one[@]}"); many=$(med "${t_many[@]}"); ssl2=$(med "${t_ssl_many[@]}")
    rm -rf "$d/one" "$d/many"
    mkdir -p "$d/small"
    python3 - "$d/small" "$nsmall" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    p = os.path.join(root, "d%04d" % (i // 100))
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, "f%03d.bin" % (i % 100)), "wb") as f:
        f.write(os.urandom(512))
PY
    "$airlock" pack "$d/small" --out "$d/sb" --key "$root/k" -q
    local mbytes
    mbytes=$(stat -c %s "$d/sb/manifest.json")
    /usr/bin/time -f '%e %M' -o "$d/time.txt" "$airlock" verify "$d/sb" --trust "$pub" -q
    local vs vr
    read -r vs vr < "$d/time.txt"
    cat <<MD

## Verify on every core (format v3) ($(date -u +%Y-%m-%d), $(nproc) cores, warm cache, median of $runs alternating runs)

| payload | airlock verify (s) | openssl dgst -sha256 (s) | ratio |
|---|---:|---:|---:|
| $mb MiB in one chunk | $(printf %.2f "$one") | $(printf %.2f "$ssl1") | $(ratio "$one" "$ssl1") |
| $mb MiB in 64 MiB chunks | $(printf %.2f "$many") | $(printf %.2f "$ssl2") | $(ratio "$many" "$ssl2") |

- $nsmall files of 512 bytes: manifest $mbytes bytes ($(( mbytes / nsmall )) bytes per file); verify $vs s, peak RSS $(( vr / 1024 )) MiB
MD
    rm -rf "$d"
}

# --- interrupt: how long pack takes to stop on SIGINT mid-chunk, and what it leaves ----------
# Baselines, stopped the same way: cp(1) of the same file (its default SIGINT action: it dies
# and leaves its copy), and with BENCH_INTR_BASELINE=PATH an older airlock binary (before this
# change: no handler, it dies and leaves its partial chunk and staging). All are signalled once
# BENCH_INTR_AT MiB are out, alternating in one run.
bench_interrupt() {
    local base=${BENCH_INTR_BASELINE:-} b_row=""
    local -a b_ms b_left
    local mb=${BENCH_INTR_MB:-1024} at=${BENCH_INTR_AT:-256} src="$root/intr-src.bin" i
    head -c "$((mb << 20))" /dev/urandom > "$src"
    local -a a_ms c_ms a_left c_left
    # stop_at DIR PID: waits until DIR holds $at MiB, sends SIGINT, waits; sets ms (to exit).
    # (Not run in $(...): the subshell could not wait for the job.)
    local ms
    stop_at() {
        local dir=$1 pid=$2 t0 t1
        until [ "$(du -sbL "$dir" 2>/dev/null | cut -f1)" -ge "$((at << 20))" ] 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || { echo "finished before $at MiB: raise BENCH_INTR_MB" >&2; exit 1; }
            sleep 0.005
        done
        t0=$(date +%s%N); kill -INT "$pid"; wait "$pid" || true; t1=$(date +%s%N)
        ms=$(( (t1 - t0) / 1000000 ))
    }
    left() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }
    med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
    mibs() { local x; for x in "$@"; do printf '%d ' "$((x >> 20))"; done; }
    # Job control on: a background job of a non-interactive shell would start with SIGINT
    # ignored (POSIX), and cp and an airlock that honours that would not stop at all.
    set -m
    for ((i = 0; i < runs; i++)); do
        rm -rf "$root/out"; sync
        "$airlock" pack "$src" --out "$root/out" --key "$root/k" -q 2>/dev/null & local p=$!
        stop_at "$root/out" "$p"; a_ms+=("$ms"); a_left+=("$(left "$root/out")")
        rm -rf "$root/out"; mkdir -p "$root/out"; sync
        cp "$src" "$root/out/copy" & p=$!
        stop_at "$root/out" "$p"; c_ms+=("$ms"); c_left+=("$(left "$root/out")")
        if [ -n "$base" ]; then
            rm -rf "$root/out"; sync
            "$base" pack "$src" --out "$root/out" --key "$root/k" -q 2>/dev/null & p=$!
            stop_at "$root/out" "$p"; b_ms+=("$ms"); b_left+=("$(left "$root/out")")
        fi
    done
    set +m
    [ -n "$base" ] && b_row="| $base pack (baseline) | $(med "${b_ms[@]}") | ${b_ms[*]} | $(med "${b_left[@]}") | $(mibs "${b_left[@]}") |"

    cat <<MD

## Interrupting pack ($(date -u +%Y-%m-%d), $(nproc) cores, ${mb} MiB file, SIGINT once ${at} MiB were written, $runs runs)

| stopped by SIGINT | median ms to exit | runs (ms) | bytes left in OUT (median) | runs (MiB left) |
|---|---:|---|---:|---|
| airlock pack | $(med "${a_ms[@]}") | ${a_ms[*]} | $(med "${a_left[@]}") | $(mibs "${a_left[@]}") |
| cp (default SIGINT action) | $(med "${c_ms[@]}") | ${c_ms[*]} | $(med "${c_left[@]}") | $(mibs "${c_left[@]}") |
$b_row
MD
    rm -f "$src"; rm -rf "$root/out"
}

# --- staged import (issue 10): import against cat/cp -a/tar + sync, warm and cold ------------
# Every airlock run and every baseline ends with `sync`: both pay their own durability.
# Runs alternate (A B B A …) and each starts with an empty $root/out after a `sync`; cold runs
# also drop the page cache first (`echo 3 > /proc/sys/vm/drop_caches`, root only).
#   BENCH_MODEL_SIZE=64Mi BENCH_SMALL_FILES=2000 BENCH_SMALL_RUNS=3 …  # a quick debug run
#   BENCH_MILLION=1 …                  # also bench_million: 1,000,000 and 100,000 small files
small_n=${BENCH_SMALL_FILES:-100000}
small_runs=${BENCH_SMALL_RUNS:-5}
million=${BENCH_MILLION:-0}
cold=0 can_drop=0

drop_caches() { [ "$can_drop" = 1 ] && echo 3 > /proc/sys/vm/drop_caches; }

# once NAME CMD: one timed run of the shell command CMD (bash -c: pass paths as exported
# variables), appended to NAME's samples.
declare -A samples msamples
once() {
    local name=$1 cmd=$2 t0 t1
    rm -rf "$root/out"; mkdir -p "$root/out"
    sync
    if [ "$cold" = 1 ]; then drop_caches; fi
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$root/time.txt" bash -c "$cmd" > /dev/null
    t1=$(date +%s.%N)
    samples[$name]+="$(echo "$t1 - $t0" | bc -l) "
    msamples[$name]+="$(tail -1 "$root/time.txt") "
}
# summarise NAME: median wall and max RSS of NAME's samples into wall[NAME], rss[NAME]
summarise() {
    local name=$1 n
    n=$(wc -w <<< "${samples[$name]}")
    wall[$name]=$(tr ' ' '\n' <<< "${samples[$name]}" | grep . | sort -g | sed -n "$(( (n + 1) / 2 ))p")
    rss[$name]=$(tr ' ' '\n' <<< "${msamples[$name]}" | grep . | sort -g | tail -1)
    printf '%-60s median %7.2f s   max RSS %7d KiB   (runs: %s)\n' "$name" "${wall[$name]}" "${rss[$name]}" \
        "$(printf '%.2f ' ${samples[$name]})" >&2
}
# alternate N NAME_A CMD_A NAME_B CMD_B: N runs of each, interleaved A B B A A B …
alternate() {
    local n=$1 i; shift
    samples[$1]= msamples[$1]= samples[$3]= msamples[$3]=
    for ((i = 0; i < n; i++)); do
        if (( i % 2 == 0 )); then once "$1" "$2"; once "$3" "$4"
        else once "$3" "$4"; once "$1" "$2"; fi
    done
    summarise "$1"; summarise "$3"
}

# io_of OUT CMD...: runs CMD (cold when permitted) and writes "rchar read_bytes" of the finished
# child, read from /proc/PID/io before it is reaped (os.waitid with WNOWAIT), to OUT.
io_of() {
    local out=$1; shift
    rm -rf "$root/out"; mkdir -p "$root/out"
    sync; drop_caches || true
    python3 - "$out" "$@" <<'PY'
import os, subprocess, sys
out, cmd = sys.argv[1], sys.argv[2:]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
with open(f"/proc/{p.pid}/io") as f:
    io = dict(line.split(": ") for line in f.read().splitlines())
rc = p.wait()
with open(out, "w") as f:
    f.write(f"{io['rchar']} {io['read_bytes']}\n")
sys.exit(rc)
PY
}
chunk_bytes() { find "$1/chunks" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
# at_most VALUE LIMIT: met / missed by N% (VALUE over LIMIT)
at_most() { met "$1" 1 "$2"; }

# small_data N: N files of 512 random bytes in N/100 directories under $root/small-N/src
# (made once, kept).
small_data() {
    local n=$1 d="$root/small-$1"
    small="$d/src"
    if [ ! -f "$d/.complete" ]; then
        rm -rf "$d"; mkdir -p "$small"
        python3 - "$small" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
dirs = max(1, n // 100)
for i in range(dirs):
    os.mkdir(os.path.join(root, f"d{i:05d}"))
for i in range(n):
    with open(os.path.join(root, f"d{i % dirs:05d}", f"f{i // dirs:06d}.bin"), "wb") as f:
        f.write(os.urandom(512))
PY
        touch "$d/.complete"
    fi
}

# timed NAME CMD...: one run, "wall rss" (s, KiB) into wall[NAME]/rss[NAME], or status[NAME]
# "failed (exit N): first error line" — a failure is a figure here, not the end of the script.
declare -A status
timed() {
    local name=$1 rc=0; shift
    sync
    /usr/bin/time -f '%e %M' -o "$root/time.txt" "$@" > /dev/null 2> "$root/err.txt" || rc=$?
    if [ "$rc" = 0 ]; then
        read -r "wall[$name]" "rss[$name]" < <(tail -1 "$root/time.txt"); status[$name]=ok
    else
        wall[$name]=0 rss[$name]=0
        status[$name]="failed (exit $rc): $(grep -v '^Command exited' "$root/err.txt" | head -1)"
    fi
    printf '%-60s %s %7.2f s   max RSS %7d KiB\n' "$name" "${status[$name]}" "${wall[$name]}" "${rss[$name]}" >&2
}
one_line() {   # NAME: "W s, R MiB" or the failure
    if [ "${status[$1]}" = ok ]; then printf '%.1f s, peak RSS %.1f MiB' "${wall[$1]}" "$(mib "$1")"
    else printf '%s' "${status[$1]//|/\\|}"; fi
}

# big_blob: pack, verify and import --files one $big file (BENCH_BIG). The source is deleted
# after pack when the filesystem could not also hold the bundle and the import.
big_blob() {
    local f="$root/big/blob.bin" size
    size=$(numfmt --from=iec "$big")
    mkdir -p "$root/big"
    [ -f "$f" ] || head -c "$size" /dev/urandom > "$f"
    rm -rf "$root/big/bundle" "$root/big/dst"
    timed "big: airlock pack" "$airlock" pack "$f" --out "$root/big/bundle" --key "$root/k" -q
    if (( $(df --output=avail -B1 "$root" | tail -1) < size * 2 + (1 << 30) )); then rm -f "$f"; fi
    timed "big: airlock verify" "$airlock" verify "$root/big/bundle" --trust "$pub" -q
    timed "big: airlock import --files" "$airlock" import "$root/big/bundle" --trust "$pub" --files "$root/big/dst" -q
    rm -rf "$root/big/bundle" "$root/big/dst"
    printf -- '- one %s file: pack %s; verify %s; import --files %s (target: peak RSS ≤ 100 MiB on every path: %s)\n' \
        "$big" "$(one_line "big: airlock pack")" "$(one_line "big: airlock verify")" "$(one_line "big: airlock import --files")" \
        "$(at_most "$(echo "$(printf '%s\n' "${rss[big: airlock pack]}" "${rss[big: airlock verify]}" "${rss[big: airlock import --files]}" | sort -g | tail -1) / 1024" | bc -l)" 100)"
}

bench_import() {
    local cs mode a b name payload lines=() rows=() cache_note
    if (sync; echo 3 > /proc/sys/vm/drop_caches) 2> /dev/null; then
        can_drop=1; cache_note="cold runs drop the page cache before each timed run"
    else
        can_drop=0; cache_note="**cold runs skipped: dropping the page cache is not permitted here** (needs root)"
        echo "bench_import: cannot write /proc/sys/vm/drop_caches: warm runs only" >&2
    fi
    export airlock pub root
    model_data
    payload=$(du -sb --exclude=.complete "$data" | cut -f1)

    # 1. import --files of the model directory vs cat CHUNKS > FILE && sync.
    # (BENCH_IMPORT_SMALL=only skips 1-4: only the small files; BENCH_IMPORT_SMALL=0 skips them.)
    declare -A cbytes
    if [ "${BENCH_IMPORT_SMALL:-}" != only ]; then
    for cs in default 64MiB; do
        ib="$root/imp-$cs"; export ib
        rm -rf "$ib"
        if [ "$cs" = default ]; then "$airlock" pack "$data" --out "$ib" --key "$root/k" -q
        else "$airlock" pack "$data" --out "$ib" --key "$root/k" --chunk-size "$cs" -q; fi
        cbytes[$cs]=$(chunk_bytes "$ib")
        for mode in warm cold; do
            [ "$mode" = warm ] || [ "$can_drop" = 1 ] || continue
            cold=0; [ "$mode" = warm ] || cold=1
            cat "$ib"/chunks/* > /dev/null
            a="import: airlock import --files && sync (chunk $cs, $mode)"
            b="import: cat CHUNKS > FILE && sync (chunk $cs, $mode)"
            alternate "$runs" "$a" '"$airlock" import "$ib" --trust "$pub" --files "$root/out/dst" -q && sync' \
                "$b" 'cat "$ib"/chunks/* > "$root/out/file" && sync'
            rows+=("$a" "$b")
            lines+=("- import --files, chunk $cs, $mode: airlock takes **$(ratio "${wall[$a]}" "${wall[$b]}")×** \`cat CHUNKS > FILE && sync\`'s time (target ≤ 1.3×): $(met "${wall[$a]}" "${wall[$b]}" 1.3)")
        done
        cold=0
        # 3. bytes read per bundle byte (cold where permitted, so read_bytes is the device's).
        local r rb
        io_of "$root/io.txt" "$airlock" import "$ib" --trust "$pub" --files "$root/out/dst" -q
        read -r r rb < "$root/io.txt"
        lines+=("- import --files, chunk $cs: read **$(ratio "$r" "${cbytes[$cs]}")×** the chunks' bytes (rchar $r / $(numfmt --to=iec-i --suffix=B "${cbytes[$cs]}"); read_bytes $(ratio "$rb" "${cbytes[$cs]}")×; target ≤ 1.05×): $(met "$r" "${cbytes[$cs]}" 1.05)")
        io_of "$root/io.txt" "$airlock" verify "$ib" --trust "$pub" -q
        read -r r rb < "$root/io.txt"
        lines+=("- verify, chunk $cs: read **$(ratio "$r" "${cbytes[$cs]}")×** the chunks' bytes (read_bytes $(ratio "$rb" "${cbytes[$cs]}")×)")
        rm -rf "$ib"
    done

    # 4. import --hf-cache vs cp -a of the cache hf download made.
    hf_setup
    kill "$hf_pid" 2>/dev/null; wait "$hf_pid" 2>/dev/null || true; hf_pid=
    local hrows=()
    for mode in warm cold; do
        [ "$mode" = warm ] || [ "$can_drop" = 1 ] || continue
        cold=0; [ "$mode" = warm ] || cold=1
        find "$root/hf/bundle" "$root/hf/ref" -type f -exec cat {} + > /dev/null
        a="hf: airlock import --hf-cache && sync ($mode)"
        b="hf: cp -a of the hf download cache && sync ($mode)"
        alternate "$runs" "$a" '"$airlock" import "$root/hf/bundle" --trust "$pub" --hf-cache="$root/out/cache" -q && sync' \
            "$b" 'cp -a "$root/hf/ref" "$root/out/cache" && sync'
        hrows+=("$a" "$b")
        lines+=("- import --hf-cache, $mode: airlock takes **$(ratio "${wall[$a]}" "${wall[$b]}")×** \`cp -a … && sync\`'s time (target ≤ 1.3×): $(met "${wall[$a]}" "${wall[$b]}" 1.3)")
    done
    cold=0
    rm -rf "$root/hf"

    cat <<MD

## Staged import (issue 10) ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), model-like directory of $(numfmt --to=iec-i --suffix=B "$payload"), median of $runs alternating runs ($small_runs for small files); $cache_note)

$(table "${rows[@]}")

$(table "${hrows[@]}")

$(printf '%s\n' "${lines[@]}")
- import --registry: see the Images section (\`BENCH_IMAGES=1\`; target ≤ 0.8× skopeo's time)
MD
    fi

    # 6. small files: import --files vs a tar pipe, flushes, manifest bytes per file, RSS.
    # (BENCH_IMPORT_SMALL=0 skips them.)
    if [ "${BENCH_IMPORT_SMALL:-}" = 0 ]; then
        if [ -n "$big" ] && [ "$models" != 1 ]; then big_blob; fi
        return 0
    fi
    small_data "$small_n"
    sb="$root/small-$small_n/bundle"; export sb small
    rm -rf "$sb"
    timed "small: airlock pack" "$airlock" pack "$small" --out "$sb" --key "$root/k" -q
    [ "${status[small: airlock pack]}" = ok ] || { echo "pack of $small_n files failed: ${status[small: airlock pack]}" >&2; exit 1; }
    tar -cf - -C "$small" . | cat > /dev/null; cat "$sb"/chunks/* > /dev/null
    a="small: airlock import --files && sync"
    b="small: tar -cf - SRC | tar -xf - -C DST && sync"
    # A trial import first: a failure (e.g. EMFILE) is a figure, not the end of the script.
    rm -rf "$root/out"
    timed "small: airlock import --files (trial)" "$airlock" import "$sb" --trust "$pub" --files "$root/out/dst" -q
    rm -rf "$root/out"
    if [ "${status[small: airlock import --files (trial)]}" != ok ]; then
        alternate "$small_runs" "$b" 'mkdir "$root/out/dst" && tar -cf - -C "$small" . | tar -xf - -C "$root/out/dst" && sync' \
            "$b (again)" 'mkdir "$root/out/dst" && tar -cf - -C "$small" . | tar -xf - -C "$root/out/dst" && sync'
        measure "small: airlock verify" "$airlock" verify "$sb" --trust "$pub" -q
        cat <<MD

### $small_n small files ($(( small_n / 100 > 0 ? small_n / 100 : 1 )) directories, 512 B each)

$(table "small: airlock pack" "$b" "small: airlock verify")

- $small_n small files: airlock import --files **$(one_line "small: airlock import --files (trial)")** (target ≤ 1.5× the tar pipe: **missed**, the import fails)
- manifest: **$(printf %.0f "$(echo "$(stat -c %s "$sb/manifest.json") / $small_n" | bc -l)") B per file** (target ≤ 150 B)
- peak RSS over $small_n files: pack $(printf %.1f "$(mib "small: airlock pack")") MiB, verify $(printf %.1f "$(mib "small: airlock verify")") MiB (target ≤ 100 MiB)
MD
        rm -rf "$sb"
        return 0
    fi
    alternate "$small_runs" "$a" '"$airlock" import "$sb" --trust "$pub" --files "$root/out/dst" -q && sync' \
        "$b" 'mkdir "$root/out/dst" && tar -cf - -C "$small" . | tar -xf - -C "$root/out/dst" && sync'
    measure "small: airlock verify" "$airlock" verify "$sb" --trust "$pub" -q
    rm -rf "$root/out"; sync
    strace -f -c -e trace=fsync,fdatasync,syncfs,sync -o "$root/strace.txt" \
        "$airlock" import "$sb" --trust "$pub" --files "$root/out/dst" -q > /dev/null
    local flushes detail mbytes
    flushes=$(awk '$NF ~ /^(fsync|fdatasync|syncfs|sync)$/ { s += $4 } END { print s + 0 }' "$root/strace.txt")
    detail=$(awk '$NF ~ /^(fsync|fdatasync|syncfs|sync)$/ { printf "%s%s %s", sep, $4, $NF; sep = ", " }' "$root/strace.txt")
    mbytes=$(stat -c %s "$sb/manifest.json")
    rm -rf "$root/out"

    cat <<MD

### $small_n small files ($(( small_n / 100 > 0 ? small_n / 100 : 1 )) directories, 512 B each; median of $small_runs alternating runs)

$(table "small: airlock pack" "$a" "$b" "small: airlock verify")

- $small_n small files ($(( small_n / 100 > 0 ? small_n / 100 : 1 )) directories, 512 B each): airlock takes **$(ratio "${wall[$a]}" "${wall[$b]}")×** the tar pipe's time (target ≤ 1.5×): $(met "${wall[$a]}" "${wall[$b]}" 1.5)
- flushes per import of $small_n files: **$flushes** (${detail:-none}; target: a handful, ≤ 10): $(at_most "$flushes" 10)
- manifest: **$(printf %.0f "$(echo "$mbytes / $small_n" | bc -l)") B per file** ($(numfmt --to=iec-i --suffix=B "$mbytes"); target ≤ 150 B): $(at_most "$(echo "$mbytes / $small_n" | bc -l)" 150)
- peak RSS over $small_n files: verify **$(printf %.1f "$(mib "small: airlock verify")") MiB**, import **$(printf %.1f "$(mib "$a")") MiB** (target ≤ 100 MiB): verify $(at_most "$(mib "small: airlock verify")" 100), import $(at_most "$(mib "$a")" 100)
MD

    rm -rf "$sb"
    if [ -n "$big" ] && [ "$models" != 1 ]; then big_blob; fi
}

# --- a million files (issue 10): pack, verify and import --files of 1,000,000 files of 512 B in
# 1,000 directories, and of 100,000 (same shape) for comparison. One run of each (minutes at a
# million), wall time and peak RSS; the import's baseline in the same run, alternating order
# between sizes: the tar pipe of the same tree + sync. Disk: about 10 KiB per file at a time.
#   BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 BENCH_PACK_FLOOR=0 BENCH_PIECES=0 \
#     BENCH_IMPORT=0 BENCH_MILLION=1 scripts/bench.sh
#   BENCH_MILLION_SIZES="2000 20000" …   # a quick check of the script itself
# million_data N: N files of 512 random bytes in 1,000 directories under $root/million-N/src
# (made once, kept).
million_data() {
    local n=$1 d="$root/million-$1"
    msrc="$d/src"
    # bench_import's 100,000 files have the same shape (1,000 directories): reused.
    if [ ! -f "$d/.complete" ] && [ "$n" = 100000 ] && [ -d "$root/small-100000/src" ] \
        && [ "$(find "$root/small-100000/src" -type f -size 512c | wc -l)" = 100000 ]; then
        msrc="$root/small-100000/src"; return 0
    fi
    if [ ! -f "$d/.complete" ]; then
        rm -rf "$d"; mkdir -p "$msrc"
        python3 - "$msrc" "$n" 1000 <<'PY'
import os, sys
root, n, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(dirs):
    os.makedirs(os.path.join(root, f"d{i:05d}"), exist_ok=True)
for i in range(n):
    with open(os.path.join(root, f"d{i % dirs:05d}", f"f{i // dirs:06d}.bin"), "wb") as f:
        f.write(os.urandom(512))
PY
        touch "$d/.complete"
    fi
}
bench_million() {
    local n mb rows=() lines=() first=1 a b
    export airlock pub root
    for n in ${BENCH_MILLION_SIZES:-100000 1000000}; do
        million_data "$n"
        mb="$root/million-$n/bundle"; export mb msrc
        rm -rf "$mb" "$root/out"
        timed "$n files: airlock pack" "$airlock" pack "$msrc" --out "$mb" --key "$root/k" -q
        if [ "${status[$n files: airlock pack]}" != ok ]; then
            lines+=("- $n files: pack $(one_line "$n files: airlock pack")"); continue
        fi
        timed "$n files: airlock verify" "$airlock" verify "$mb" --trust "$pub" -q
        a="$n files: airlock import --files && sync"
        b="$n files: tar -cf - SRC | tar -xf - -C DST && sync"
        for which in $( [ "$first" = 1 ] && echo "a b" || echo "b a" ); do
            rm -rf "$root/out"; mkdir -p "$root/out"; sync
            if [ "$which" = a ]; then
                timed "$a" bash -c '"$airlock" import "$mb" --trust "$pub" --files "$root/out/dst" -q && sync'
            else
                timed "$b" bash -c 'mkdir "$root/out/dst" && tar -cf - -C "$msrc" . | tar -xf - -C "$root/out/dst" && sync'
            fi
        done
        first=$(( 1 - first ))
        rm -rf "$root/out"
        rows+=("$n files: airlock pack" "$n files: airlock verify" "$a" "$b")
        local mbytes; mbytes=$(stat -c %s "$mb/manifest.json")
        lines+=("- $n files: manifest $(numfmt --to=iec-i --suffix=B "$mbytes") ($(( mbytes / n )) B per file); pack $(one_line "$n files: airlock pack"); verify $(one_line "$n files: airlock verify"); import --files $(one_line "$a"); the tar pipe $(one_line "$b")$( [ "${status[$a]}" = ok ] && [ "${status[$b]}" = ok ] && printf ' (import %s× the tar pipe)' "$(ratio "${wall[$a]}" "${wall[$b]}")")")
        rm -rf "$mb"
    done
    cat <<MD

## A million files (bench_million, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), 512 B files in 1,000 directories, one run each, load average $(cut -d' ' -f1-3 /proc/loadavg))

$(table "${rows[@]}")

$(printf '%s\n' "${lines[@]}")
MD
}

# --- issue 11: the static release binary against the dynamic one, and inspect --files --------
# The same commit built both ways (scripts/release.sh --build-only: +crt-static, own resolver;
# cargo build --release: dynamic glibc), alternated on the same 2 GiB model directory, warm
# cache: pack, verify and import --files. Then the peak RSS of `inspect --files` (every file's
# row) against plain `inspect` on a 100,000-file bundle: the listing streams.
bench_static() {
    model_data
    local st; st=$(scripts/release.sh --build-only)
    export data root pub st airlock chunk
    local sb="$root/static-b"
    rm -rf "$sb"; "$airlock" pack "$data" --out "$sb" --key "$root/k" --chunk-size "$chunk" -q
    export sb
    alternate "$runs" "static: pack" '"$st" pack "$data" --out "$root/out/b" --key "$root/k" --chunk-size "$chunk" -q' \
        "dynamic: pack" '"$airlock" pack "$data" --out "$root/out/b" --key "$root/k" --chunk-size "$chunk" -q'
    alternate "$runs" "static: verify" '"$st" verify "$sb" --trust "$pub" -q' \
        "dynamic: verify" '"$airlock" verify "$sb" --trust "$pub" -q'
    alternate "$runs" "static: import --files" '"$st" import "$sb" --trust "$pub" --files "$root/out/dst" -q' \
        "dynamic: import --files" '"$airlock" import "$sb" --trust "$pub" --files "$root/out/dst" -q'
    small_data 100000
    local ib="$root/static-small"
    rm -rf "$ib"; "$airlock" pack "$small" --out "$ib" --key "$root/k" -q
    export ib
    alternate 1 "100000 files: inspect" '"$airlock" inspect "$ib" --trust "$pub"' \
        "100000 files: inspect --files" '"$airlock" inspect "$ib" --trust "$pub" --files'
    rm -rf "$sb" "$ib"
    local r=() n
    for n in pack verify "import --files"; do
        r+=("- $n: static $(printf %.2f "${wall[static: $n]}") s, dynamic $(printf %.2f "${wall[dynamic: $n]}") s: **$(ratio "${wall[static: $n]}" "${wall[dynamic: $n]}")×**")
    done
    cat <<MD

## The static release binary (bench_static, $(date -u +%Y-%m-%d), $(nproc) cores, warm cache, $runs runs alternated, load average $(cut -d' ' -f1-3 /proc/loadavg))

$(table "static: pack" "dynamic: pack" "static: verify" "dynamic: verify" "static: import --files" "dynamic: import --files" "100000 files: inspect" "100000 files: inspect --files")

$(printf '%s\n' "${r[@]}")
- inspect --files lists 100,000 rows at $(printf %.1f "$(mib "100000 files: inspect --files")") MiB peak against $(printf %.1f "$(mib "100000 files: inspect")") MiB for the summary alone
MD
}

# --- volumes and parity (issue 12): a ~4 GiB payload over 3 data volumes + 1 parity volume ---
# against the same payload in one directory, same run, alternated: pack and import time ratios
# (target ≤ 1.2×), then `airlock repair` of one missing data volume in MB/s of rebuilt data
# (target ≥ 500 MB/s; repair first verifies every volume given, signatures and every chunk, so
# its verify time is shown on its own too), peak RSS of each.
#   BENCH_VOLUMES=1 BENCH_MODELS=0 BENCH_IMAGES=0 BENCH_HF=0 BENCH_HOSTILE=0 BENCH_PACK_FLOOR=0 \
#     BENCH_PIECES=0 BENCH_IMPORT=0 scripts/bench.sh
#   BENCH_VOLUMES_SIZE=4Gi (numfmt syntax) sets the payload; the volume size is a third of it
#   plus 2 %, so that it makes 3 data volumes.
bench_volumes() {
    local size; size=$(numfmt --from=auto "${BENCH_VOLUMES_SIZE:-4Gi}")
    local vd="$root/vol-src" vsize=$(( size / 3 + size / 50 ))
    if [ ! -f "$vd/.complete-$size" ]; then
        rm -rf "$vd"; mkdir -p "$vd"
        head -c $(( size / 2 )) /dev/urandom > "$vd/model-00001-of-00002.safetensors"
        head -c $(( size - size / 2 )) /dev/urandom > "$vd/model-00002-of-00002.safetensors"
        echo '{"architectures": ["LlamaForCausalLM"]}' > "$vd/config.json"
        touch "$vd/.complete-$size"
    fi
    export vd vsize root pub airlock chunk
    alternate "$runs" "volumes: pack, one directory" \
        '"$airlock" pack "$vd" --out "$root/out/b" --key "$root/k" --chunk-size "$chunk" -q' \
        "volumes: pack, 3 data + 1 parity" \
        '"$airlock" pack "$vd" --out "$root/out/b" --key "$root/k" --chunk-size "$chunk" --volume-size "$vsize" --parity 1 -q'
    # Inputs for import and repair, made outside the timed region.
    local sb="$root/vol-single" vb="$root/vol-multi"
    rm -rf "$sb" "$vb"
    # Channels of their own: each is imported again and again (the same bundle again is a no-op
    # for freshness), and neither may look like a rollback of the other.
    "$airlock" pack "$vd" --out "$sb" --key "$root/k" --chunk-size "$chunk" --channel bench-single -q
    "$airlock" pack "$vd" --out "$vb" --key "$root/k" --chunk-size "$chunk" --volume-size "$vsize" --parity 1 --channel bench-volumes -q
    local nvol; nvol=$(find "$vb" -mindepth 1 -maxdepth 1 -type d -name 'vol-*' | wc -l)
    export sb vb
    # The disk's own bound, same run: as many bytes as each pack writes, written durably by dd.
    local sbytes vbytes
    sbytes=$(du -sb "$sb" | cut -f1); vbytes=$(du -sb "$vb" | cut -f1)
    export ddsingle=$(( sbytes / 8388608 + 1 )) ddmulti=$(( vbytes / 8388608 + 1 ))
    alternate "$runs" "volumes: dd of the one-directory bundle's bytes" \
        'dd if=/dev/zero of="$root/out/dd" bs=8M count=$ddsingle conv=fdatasync status=none' \
        "volumes: dd of the parity bundle's bytes" \
        'dd if=/dev/zero of="$root/out/dd" bs=8M count=$ddmulti conv=fdatasync status=none'
    local import_rows="" import_note=""
    # Import of several volumes (`airlock import VOL…`) needs the volume import; without it the
    # import ratio is not measured (said so below).
    if "$airlock" import "$vb"/vol-* --trust "$pub" --files "$root/out/probe" -q >/dev/null 2>&1; then
        rm -rf "$root/out/probe"
        alternate "$runs" "volumes: import, one directory" \
            '"$airlock" import "$sb" --trust "$pub" --files "$root/out/dst" -q && sync' \
            "volumes: import, 3 data + 1 parity" \
            '"$airlock" import "$vb"/vol-* --trust "$pub" --files "$root/out/dst" -q && sync'
        import_rows="- import: $(printf %.2f "${wall[volumes: import, 3 data + 1 parity]}") s against $(printf %.2f "${wall[volumes: import, one directory]}") s: **$(ratio "${wall[volumes: import, 3 data + 1 parity]}" "${wall[volumes: import, one directory]}")×** (target ≤ 1.2×: $(met "${wall[volumes: import, 3 data + 1 parity]}" "${wall[volumes: import, one directory]}" 1.2))"
    else
        rm -rf "$root/out/probe"
        import_note="- import of several volumes: not measured (this airlock does not import several volumes yet)"
    fi
    # Repair of data volume 2 (missing), from volumes 1, 3 and 4; and verify of those three (intact
    # but incomplete: exit 4).
    local rebuilt; rebuilt=$(find "$vb/vol-002/chunks" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')
    mv "$vb/vol-002" "$root/vol-002.kept"
    alternate "$runs" "volumes: repair of volume 2 (missing)" \
        '"$airlock" repair "$vb" --out "$root/out/fixed" --trust "$pub" -q && sync' \
        "volumes: verify of volumes 1, 3, 4" \
        '"$airlock" verify "$vb"/vol-* --trust "$pub" -q; test $? -eq 4'
    export ddrebuilt=$(( rebuilt / 8388608 + 1 ))
    measure "volumes: dd of the rebuilt bytes" bash -c 'dd if=/dev/zero of="$root/parts/dd" bs=8M count=$ddrebuilt conv=fdatasync status=none'
    rm -rf "$vb" "$sb" "$root/vol-002.kept"
    local rw=${wall[volumes: repair of volume 2 (missing)]} vw=${wall[volumes: verify of volumes 1, 3, 4]}
    local ddw=${wall[volumes: dd of the rebuilt bytes]}
    local mbs rbs; mbs=$(echo "$rebuilt / $rw / 1000000" | bc -l)
    rbs=$(echo "$rebuilt / ($rw - $vw) / 1000000" | bc -l)
    cat <<MD

## Volumes and parity (bench_volumes, $(date -u +%Y-%m-%d), $(nproc) cores, warm cache, $runs runs alternated, load average $(cut -d' ' -f1-3 /proc/loadavg))

$(numfmt --to=iec "$size") of incompressible model shards, \`--chunk-size $chunk\`, \`--volume-size $vsize\` ($nvol volumes: 3 data + 1 parity) against one directory.

$(table "volumes: pack, one directory" "volumes: pack, 3 data + 1 parity" "volumes: dd of the one-directory bundle's bytes" "volumes: dd of the parity bundle's bytes" ${import_rows:+"volumes: import, one directory" "volumes: import, 3 data + 1 parity"} "volumes: repair of volume 2 (missing)" "volumes: verify of volumes 1, 3, 4" "volumes: dd of the rebuilt bytes")

- pack: $(printf %.2f "${wall[volumes: pack, 3 data + 1 parity]}") s against $(printf %.2f "${wall[volumes: pack, one directory]}") s: **$(ratio "${wall[volumes: pack, 3 data + 1 parity]}" "${wall[volumes: pack, one directory]}")×** (target ≤ 1.2×: $(met "${wall[volumes: pack, 3 data + 1 parity]}" "${wall[volumes: pack, one directory]}" 1.2)); the disk alone (dd, same bytes, fdatasync) takes $(ratio "${wall[volumes: dd of the parity bundle's bytes]}" "${wall[volumes: dd of the one-directory bundle's bytes]}")× as long for the parity bundle's bytes as for one directory's
${import_rows}${import_note}
- repair of one missing data volume ($(numfmt --to=si "$rebuilt")B rebuilt): $(printf %.0f "$mbs") MB/s of rebuilt data end to end (target ≥ 500 MB/s: $(if [ "$(echo "$mbs >= 500" | bc -l)" = 1 ]; then echo '**met**'; else echo '**missed**'; fi)); repair first verifies the three volumes given ($(printf %.2f "$vw") s alone), the rebuild itself runs at about $(printf %.0f "$rbs") MB/s; the disk alone writes those bytes durably (dd, fdatasync) at $(printf %.0f "$(echo "$rebuilt / $ddw / 1000000" | bc -l)") MB/s
MD
}

# --- nightly updates (issue 13): a repo of 4 LFS shards + config served by the Hub emulator; on
# night 2 one shard changed. Full pack vs delta pack (--base night 1), an unchanged night 3 with
# the pack cache (with and without --base), and the import of the delta vs the full bundle into an
# enclave holding night 1.
nightly_hub() {   # nightly_hub DIR: (re)starts the emulator serving DIR as bench/nightly
    if [ -n "${nh_pid:-}" ]; then kill "$nh_pid" 2>/dev/null; wait "$nh_pid" 2>/dev/null || true; fi
    start_hub "$nh_emu" "$1" bench/nightly "$root/nightly/emulator.out"
    nh_pid=$hub_pid
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
bench_nightly() {
    local shard; shard=$(numfmt --from=auto "${BENCH_NIGHTLY_SHARD:-512Mi}")
    local nd="$root/nightly" i
    cargo build --release --quiet --example hub_emulator
    nh_emu="$PWD/target/release/examples/hub_emulator"
    mkdir -p "$nd"
    if [ ! -f "$nd/.complete-$shard" ]; then
        rm -rf "$nd/n1" "$nd/n2"; mkdir -p "$nd/n1" "$nd/n2"
        for i in 1 2 3 4; do head -c "$shard" /dev/urandom > "$nd/n1/model-0000$i-of-00004.safetensors"; done
        echo '{"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}' > "$nd/n1/config.json"
        cp -al "$nd/n1/." "$nd/n2/"
        rm "$nd/n2/model-00003-of-00004.safetensors"
        head -c "$shard" /dev/urandom > "$nd/n2/model-00003-of-00004.safetensors"
        touch "$nd/.complete-$shard"
    fi
    export HF_HUB_DISABLE_TELEMETRY=1 nd pub airlock root
    local ch=bench-nightly-$$
    export ch
    # Night 1, and the enclave that imported it (an HF cache and a state), made once.
    nightly_hub "$nd/n1"
    rm -rf "$nd/b1" "$nd/enclave"
    "$airlock" pack hf://bench/nightly --out "$nd/b1" --key "$root/k" --channel "$ch" --no-cache -q
    AIRLOCK_STATE="$nd/enclave/state" "$airlock" import "$nd/b1" --trust "$pub" --hf-cache="$nd/enclave/hf" -q
    # Night 2: one shard changed.
    nightly_hub "$nd/n2"
    alternate "$runs" "nightly: full pack of night 2 (no cache)" \
        '"$airlock" pack hf://bench/nightly --out "$root/out/b" --key "$root/k" --channel "$ch" --no-cache -q' \
        "nightly: delta pack of night 2 (--base night 1, no cache)" \
        '"$airlock" pack hf://bench/nightly --out "$root/out/b" --key "$root/k" --channel "$ch" --base "$nd/b1" --trust "$pub" --no-cache -q'
    # Sizes, outside the timed runs.
    rm -rf "$nd/b2" "$nd/d2"
    "$airlock" pack hf://bench/nightly --out "$nd/b2" --key "$root/k" --channel "$ch" --no-cache --json > "$nd/b2.json"
    "$airlock" pack hf://bench/nightly --out "$nd/d2" --key "$root/k" --channel "$ch" --base "$nd/b1" --trust "$pub" --no-cache --json > "$nd/d2.json"
    local full_bytes delta_carried delta_chunks full_chunks
    full_bytes=$(json_field "$nd/b2.json" carried_bytes)
    delta_carried=$(json_field "$nd/d2.json" carried_bytes)
    full_chunks=$(chunk_bytes "$nd/b2"); delta_chunks=$(chunk_bytes "$nd/d2")
    # Night 3 = night 2 unchanged: the pack cache warmed by one pack, then timed with and without
    # --base (night 2's full bundle).
    rm -rf "$nd/cache" "$nd/warm"
    "$airlock" pack hf://bench/nightly --out "$nd/warm" --key "$root/k" --channel "$ch" --cache "$nd/cache" -q
    rm -rf "$nd/warm"
    alternate "$runs" "nightly: unchanged night 3, --cache and --base night 2" \
        '"$airlock" pack hf://bench/nightly --out "$root/out/b" --key "$root/k" --channel "$ch" --base "$nd/b2" --trust "$pub" --cache "$nd/cache" -q' \
        "nightly: unchanged night 3, --cache only" \
        '"$airlock" pack hf://bench/nightly --out "$root/out/b" --key "$root/k" --channel "$ch" --cache "$nd/cache" -q'
    kill "$nh_pid" 2>/dev/null; wait "$nh_pid" 2>/dev/null || true; nh_pid=
    # Import of night 2 into an enclave holding night 1: each run on a fresh copy of that
    # enclave (its HF cache hard-linked, its state copied; the same in both legs).
    alternate "$runs" "nightly: import of the full night 2" \
        'cp -al "$nd/enclave" "$root/out/e" && rm -rf "$root/out/e/state" && cp -a "$nd/enclave/state" "$root/out/e/state" && AIRLOCK_STATE="$root/out/e/state" "$airlock" import "$nd/b2" --trust "$pub" --hf-cache="$root/out/e/hf" -q && sync' \
        "nightly: import of the delta night 2" \
        'cp -al "$nd/enclave" "$root/out/e" && rm -rf "$root/out/e/state" && cp -a "$nd/enclave/state" "$root/out/e/state" && AIRLOCK_STATE="$root/out/e/state" "$airlock" import "$nd/d2" --trust "$pub" --hf-cache="$root/out/e/hf" -q && sync'
    local fp=${wall[nightly: full pack of night 2 (no cache)]}
    cat <<MD

## Nightly updates (bench_nightly, $(date -u +%Y-%m-%d), $(nproc) cores, warm cache, $runs runs alternated, load average $(cut -d' ' -f1-3 /proc/loadavg))

An HF repo of 4 LFS shards of $(numfmt --to=iec "$shard") + config.json served by examples/hub_emulator; on night 2 shard 3 changed ($(numfmt --to=iec "$shard") changed).

$(table "nightly: full pack of night 2 (no cache)" "nightly: delta pack of night 2 (--base night 1, no cache)" "nightly: unchanged night 3, --cache and --base night 2" "nightly: unchanged night 3, --cache only" "nightly: import of the full night 2" "nightly: import of the delta night 2")

- delta size: carries $(numfmt --to=iec "$delta_carried") of blobs ($(numfmt --to=iec "$delta_chunks") of chunks) against the full bundle's $(numfmt --to=iec "$full_bytes") ($(numfmt --to=iec "$full_chunks") of chunks): **$(ratio "$delta_chunks" "$shard")× the changed bytes** in chunks (target ≤ 1.05×: $(at_most "$(ratio "$delta_chunks" "$shard")" 1.05))
- delta pack: $(printf %.2f "${wall[nightly: delta pack of night 2 (--base night 1, no cache)]}") s against the full pack's $(printf %.2f "$fp") s: **$(ratio "${wall[nightly: delta pack of night 2 (--base night 1, no cache)]}" "$fp")×** (the unchanged shards are not downloaded)
- unchanged nightly with the cache: $(printf %.2f "${wall[nightly: unchanged night 3, --cache and --base night 2]}") s with \`--base\`, **$(ratio "${wall[nightly: unchanged night 3, --cache and --base night 2]}" "$fp")×** a full pack (target ≤ 0.05×: $(at_most "$(ratio "${wall[nightly: unchanged night 3, --cache and --base night 2]}" "$fp")" 0.05)); without \`--base\` (the cache alone: nothing downloaded, everything written again) $(printf %.2f "${wall[nightly: unchanged night 3, --cache only]}") s, $(ratio "${wall[nightly: unchanged night 3, --cache only]}" "$fp")×
- import into an enclave holding night 1: the delta $(printf %.2f "${wall[nightly: import of the delta night 2]}") s against the full bundle's $(printf %.2f "${wall[nightly: import of the full night 2]}") s: **$(ratio "${wall[nightly: import of the delta night 2]}" "${wall[nightly: import of the full night 2]}")×**
MD
}

hf=${BENCH_HF:-1}
hostile=${BENCH_HOSTILE:-1}
pack_floor=${BENCH_PACK_FLOOR:-1}
pieces=${BENCH_PIECES:-1}
interrupt=${BENCH_INTERRUPT:-0}
import=${BENCH_IMPORT:-1}
[ "$models" = 1 ] && bench_models
[ "$pack_floor" = 1 ] && bench_pack_floor
[ "$images" = 1 ] && bench_images
[ "$hf" = 1 ] && bench_hf
[ "$hostile" = 1 ] && bench_hostile
[ "$pieces" = 1 ] && bench_verify_pieces
[ "$interrupt" = 1 ] && bench_interrupt
[ "$import" = 1 ] && bench_import
[ "$million" = 1 ] && bench_million
[ "${BENCH_STATIC:-0}" = 1 ] && bench_static
[ "${BENCH_VOLUMES:-0}" = 1 ] && bench_volumes
[ "${BENCH_NIGHTLY:-0}" = 1 ] && bench_nightly
exit 0
