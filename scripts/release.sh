#!/usr/bin/env bash
# The release: a fully static airlock binary, built twice to show it is reproducible, and the
# Debian package holding it with its man pages, completions and an example trust file.
#
#   scripts/release.sh [--out DIR] [--sign KEY]   both builds, the check, the .deb (default DIR:
#                                                 target/dist), sha256 of both; with --sign, a
#                                                 minisign signature of each (KEY.minisig beside)
#   scripts/release.sh --build-only               one build; prints the binary's path (the tests)
#   scripts/release.sh --deb-only --out DIR       the .deb from the binary already built
#
# Reproducible: the same commit and toolchain give the same bytes on any machine. Paths are
# remapped (no checkout, cargo home or target dir in the binary), symbols are stripped, and every
# time stamp is SOURCE_DATE_EPOCH (default: the commit's time). Static: glibc linked in
# (x86_64-unknown-linux-gnu with +crt-static; host names resolve without NSS, see src/net.rs), so
# it runs on older distributions and in an empty chroot. Only the release build is static: the
# tests' target/debug build stays as it is.
set -euo pipefail
# The build sees the same environment whoever calls it (a shell, CI, a test under cargo test,
# which sets CARGO_* variables that would make cargo rebuild): only these variables pass.
if [ -z "${AIRLOCK_RELEASE_CLEAN_ENV:-}" ]; then
    keep=(AIRLOCK_RELEASE_CLEAN_ENV=1 "PATH=$PATH" "HOME=$HOME")
    for v in CARGO_HOME RUSTUP_HOME SOURCE_DATE_EPOCH TMPDIR; do
        if [ -n "${!v:-}" ]; then keep+=("$v=${!v}"); fi
    done
    exec env -i "${keep[@]}" "$0" "$@"
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

target=x86_64-unknown-linux-gnu
mode=full
out="$root/target/dist"
sign_key=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build-only) mode=build ;;
        --deb-only) mode=deb ;;
        --out) out=$2; shift ;;
        --out=*) out=${1#--out=} ;;
        --sign) sign_key=$2; shift ;;
        --sign=*) sign_key=${1#--sign=} ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
cargo_home=${CARGO_HOME:-$HOME/.cargo}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)

# One static build into target dir $1; prints the binary's path. An explicit --target keeps
# RUSTFLAGS off build scripts and proc macros (which cannot be static). Note: glibc's NSS code
# is still linked (reqwest's default getaddrinfo resolver, which src/net.rs replaces at run
# time, and std's getpwuid_r fallback of home_dir); rustc hides the linker's warnings about it
# (the allow-by-default linker_messages lint). At run time airlock resolves names itself and
# reads /etc/passwd itself: scripts/chroot-test.sh shows it needs no NSS module.
build() {
    local dir=$1 log
    log=$(mktemp)
    if ! env -u CARGO_ENCODED_RUSTFLAGS \
        RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$root=/build/airlock --remap-path-prefix=$dir=/build/target" \
        CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release --locked --bin airlock --target "$target" --target-dir "$dir" \
        >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    local bin="$dir/$target/release/airlock"
    if ! file "$bin" | grep -q 'statically linked\|static-pie linked'; then
        file "$bin" >&2
        echo "release.sh: $bin is not statically linked" >&2
        return 1
    fi
    echo "$bin"
}

# The .deb from binary $1 into directory $2; prints its path. A staged tree with clamped
# mtimes, root-owned, gzip -9n man pages: the same binary gives the same package bytes.
deb() {
    local bin=$1 dest=$2 stage pkg
    stage=$(mktemp -d)
    pkg="$stage/airlock"
    install -D -m 0755 "$bin" "$pkg/usr/bin/airlock"
    install -d -m 0755 "$pkg/usr/share/man/man1"
    for page in man/*.1; do
        gzip -9n <"$page" >"$pkg/usr/share/man/man1/$(basename "$page").gz"
        chmod 0644 "$pkg/usr/share/man/man1/$(basename "$page").gz"
    done
    install -D -m 0644 completions/airlock.bash "$pkg/usr/share/bash-completion/completions/airlock"
    install -D -m 0644 completions/_airlock "$pkg/usr/share/zsh/vendor-completions/_airlock"
    install -D -m 0644 completions/airlock.fish "$pkg/usr/share/fish/vendor_completions.d/airlock.fish"
    install -D -m 0644 packaging/trust.toml "$pkg/etc/airlock/trust.toml"
    install -D -m 0644 packaging/copyright "$pkg/usr/share/doc/airlock/copyright"
    install -d -m 0755 "$pkg/DEBIAN"
    local size
    size=$(du -k -s --apparent-size "$pkg" | cut -f1)
    cat >"$pkg/DEBIAN/control" <<EOF
Package: airlock
Version: $version
Architecture: amd64
Maintainer: airlock maintainers <airlock@localhost>
Installed-Size: $size
Section: utils
Priority: optional
Description: carry AI artifacts across an air gap as signed, chunked bundles
 airlock packs models, container images and files into a signed, chunked
 bundle on transfer media, then verifies every signature and hash on the
 isolated side before importing anything. The binary is static: it needs no
 shared libraries and no NSS modules.
EOF
    echo /etc/airlock/trust.toml >"$pkg/DEBIAN/conffiles"
    chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
    find "$pkg" -type d -exec chmod 0755 {} +
    find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    mkdir -p "$dest"
    local file="$dest/airlock_${version}_amd64.deb"
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$file" >/dev/null
    rm -rf "$stage"
    echo "$file"
}

case "$mode" in
    build)
        build "$root/target/release-static"
        exit 0
        ;;
    deb)
        bin="$root/target/release-static/$target/release/airlock"
        [ -x "$bin" ] || { echo "release.sh: no $bin: run --build-only first" >&2; exit 1; }
        deb "$bin" "$out"
        exit 0
        ;;
esac

echo "building the static binary (1 of 2) ..." >&2
first=$(build "$root/target/release-static")
echo "building it again in another target dir (2 of 2) ..." >&2
second=$(build "$root/target/release-static-check")
if ! cmp -s "$first" "$second"; then
    echo "release.sh: NOT REPRODUCIBLE: $first and $second differ" >&2
    exit 1
fi
mkdir -p "$out"
install -m 0755 "$first" "$out/airlock"
debfile=$(deb "$first" "$out")
# The package too: staging it again gives the same bytes.
again=$(deb "$first" "$(mktemp -d)")
if ! cmp -s "$debfile" "$again"; then
    echo "release.sh: NOT REPRODUCIBLE: $debfile and $again differ" >&2
    exit 1
fi
rm -rf "$(dirname "$again")"
(cd "$out" && sha256sum airlock "$(basename "$debfile")" >SHA256SUMS)
if [ -n "$sign_key" ]; then
    # minisign asks for the key's passphrase unless the key is unencrypted.
    for f in airlock "$(basename "$debfile")" SHA256SUMS; do
        minisign -S -s "$sign_key" -m "$out/$f" -t "airlock $version $f"
    done
fi
echo "reproducible: two builds and two packages gave the same bytes" >&2
echo "artefacts in $out:" >&2
cat "$out/SHA256SUMS"
