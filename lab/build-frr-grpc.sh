#!/bin/bash
# Build a gRPC-enabled FRR from Debian's own `frr` source package into a cache
# prefix, next to (never replacing) the Debian frr package.
#
#   FRRCTL_FRR_GRPC   install prefix   (default /var/cache/frrctl/frr-grpc)
#   FRRCTL_FRR_BUILD  build directory  (default <prefix>.build, removed on success)
#   FRRCTL_JOBS       make -j          (default: number of CPUs)
#
# Idempotent: a finished build (stamp file) is reused; only the runtime
# libraries are (re)installed if missing, e.g. on a fresh CI machine that
# restored the cache. Prints the prefix on stdout as its last line.
set -Eeuo pipefail
trap 'echo "build-frr-grpc: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

PREFIX=${FRRCTL_FRR_GRPC:-/var/cache/frrctl/frr-grpc}
BUILD=${FRRCTL_FRR_BUILD:-$PREFIX.build}
JOBS=${FRRCTL_JOBS:-$(nproc)}
STAMP=$PREFIX/.frrctl-build-ok
export DEBIAN_FRONTEND=noninteractive

log() { echo "build-frr-grpc: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (apt-get, chown frr)"; exit 1; }
case $PREFIX in /*) ;; *) log "FRRCTL_FRR_GRPC must be absolute: $PREFIX"; exit 1;; esac

mkdir -p "$(dirname "$PREFIX")"
# Two concurrent runs (CI retries, parallel jobs) must not build twice.
exec 9>"$PREFIX.lock"
flock 9

apt_updated=
apt_update() {
    [ -n "$apt_updated" ] || { apt-get update -qq >&2; apt_updated=1; }
}

# The runtime side of the build dependencies; a cached prefix on a fresh
# machine needs them too.
runtime_ok() {
    local missing
    missing=$(ldd "$PREFIX"/sbin/zebra "$PREFIX"/sbin/bgpd "$PREFIX"/lib/frr/modules/grpc.so \
              2>/dev/null | grep 'not found' || true)
    [ -z "$missing" ]
}

verify() {
    [ -x "$PREFIX/sbin/bgpd" ] && [ -x "$PREFIX/bin/vtysh" ] \
        && [ -f "$PREFIX/lib/frr/modules/grpc.so" ] || return 1
    runtime_ok || return 1
    "$PREFIX/sbin/bgpd" --version >/dev/null 2>&1
}

if [ -f "$STAMP" ]; then
    if ! runtime_ok; then
        log "cached build at $PREFIX misses runtime libraries, installing them"
        apt_update
        apt-get install -y -qq --no-install-recommends \
            libgrpc++1.51 libprotobuf32 libyang2 libjson-c5 libcap2 libelf1 \
            libreadline8 libpcre2-8-0 libc-ares2 >&2
    fi
    if verify; then
        log "reusing cached build at $PREFIX ($(cat "$STAMP"))"
        echo "$PREFIX"
        exit 0
    fi
    log "cached build at $PREFIX is broken, rebuilding"
    rm -rf "$PREFIX"
fi

# --- deb-src for bookworm, in our own sources file ------------------------
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "enabling deb-src in /etc/apt/sources.list.d/frrctl-deb-src.sources"
    cat >/etc/apt/sources.list.d/frrctl-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=
fi
apt_update

# --- build dependencies -----------------------------------------------------
t0=$(date +%s)
apt-get build-dep -y -qq frr >&2
apt-get install -y -qq --no-install-recommends \
    libgrpc++-dev libgrpc-dev libprotobuf-dev protobuf-compiler-grpc \
    dpkg-dev build-essential >&2
log "dependencies ready in $(( $(date +%s) - t0 )) s"

# --- source -------------------------------------------------------------------
rm -rf "$BUILD"
mkdir -p "$BUILD"
cd "$BUILD"
apt-get source -qq frr >&2
SRC_DIR=$(find . -maxdepth 1 -mindepth 1 -type d -name 'frr-*' | head -n1)
[ -n "$SRC_DIR" ] || { log "apt-get source frr produced no frr-* directory"; exit 1; }
cd "$SRC_DIR"
VERSION=$(dpkg-parsechangelog -S Version)
log "building FRR $VERSION with gRPC in $BUILD/$SRC_DIR"

# --- configure: only what frrctl uses ---------------------------------------
t1=$(date +%s)
./bootstrap.sh >&2
./configure -q \
    --prefix="$PREFIX" \
    --sysconfdir="$PREFIX/etc" \
    --localstatedir="$PREFIX/var" \
    --with-moduledir="$PREFIX/lib/frr/modules" \
    --enable-user=frr --enable-group=frr --enable-vty-group=frrvty \
    --enable-grpc \
    --enable-multipath=64 \
    --disable-doc --disable-doc-html \
    --disable-ripd --disable-ripngd --disable-ldpd --disable-nhrpd \
    --disable-eigrpd --disable-babeld --disable-isisd --disable-fabricd \
    --disable-pimd --disable-pim6d --disable-pbrd --disable-vrrpd \
    --disable-pathd --disable-sharpd \
    --disable-bgp-vnc --disable-ospfapi --disable-ospfclient \
    --disable-snmp --disable-rpki --disable-scripting \
    --disable-static >&2
make -j"$JOBS" >&2
log "compiled in $(( $(date +%s) - t1 )) s"

# --- install: stage, then move into place, so a failed run leaves no half prefix
STAGE=$BUILD/stage
make install DESTDIR="$STAGE" >&2
rm -rf "$PREFIX"
mv "$STAGE$PREFIX" "$PREFIX"
mkdir -p "$PREFIX/var/run/frr" "$PREFIX/etc/frr"
chown frr:frr "$PREFIX/var/run/frr" "$PREFIX/etc/frr" 2>/dev/null || true

verify || { log "built prefix $PREFIX does not verify"; exit 1; }
echo "frr $VERSION grpc, built $(date -u +%FT%TZ)" >"$STAMP"
cd /
rm -rf "$BUILD"
log "done: $PREFIX in $(( $(date +%s) - t0 )) s total"
echo "$PREFIX"
