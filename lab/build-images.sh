#!/bin/bash
# Build two Debian 12 guest images from Debian's packages with mmdebstrap, for
# the guest OS tests (tests/guestos): each configures its network only from
# frrctl's ConfigDrive, nothing is baked in.
#
#   debian-eni      cloud-init + ifupdown                (ENI renderer)
#   debian-netplan  cloud-init + netplan.io + networkd   (netplan renderer)
#
#   FRRCTL_IMAGES         cache directory (default /var/cache/frrctl/images)
#   FRRCTL_IMAGE_SOURCES  apt sources file for the guest (default: this
#                         machine's /etc/apt/sources.list.d/debian.sources)
#
# Each image is <cache>/<name>-<key>/{root.qcow2,vmlinuz,initrd.img}, with the
# symlink <cache>/<name> to it; <key> hashes this script and the apt sources, so
# a change to either builds anew and an unchanged cache is reused at once. QEMU
# boots them with -kernel/-initrd and root=/dev/vda (no bootloader). Prints the
# cache directory on stdout as its last line.
set -Eeuo pipefail
trap 'echo "build-images: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

CACHE=${FRRCTL_IMAGES:-/var/cache/frrctl/images}
SOURCES=${FRRCTL_IMAGE_SOURCES:-/etc/apt/sources.list.d/debian.sources}
SUITE=bookworm
IMAGES=(debian-eni debian-netplan)
export DEBIAN_FRONTEND=noninteractive

log() { echo "build-images: $*" >&2; }

# --- mmdebstrap customize hook: `build-images.sh --customize NAME ROOT` ------
# Only what a cloud image has: no network configuration, cloud-init looks for
# a ConfigDrive only.
customize() {
    local name=$1 root=$2
    echo '/dev/vda / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
    echo localhost >"$root/etc/hostname"
    mkdir -p "$root/etc/cloud/cloud.cfg.d"
    printf 'datasource_list: [ ConfigDrive ]\n' >"$root/etc/cloud/cloud.cfg.d/90_dpkg.cfg"
    # A lab image has no sshd, no locales and a fixed-size root: skip what
    # would fail for that (an error would hide a real one in `cloud-init status`).
    printf 'resize_rootfs: false\nlocale: false\nssh_genkeytypes: []\nssh_deletekeys: false\n' \
        >"$root/etc/cloud/cloud.cfg.d/91_frrctl-lab.cfg"
    rm -rf "$root"/etc/netplan/* "$root"/etc/systemd/network/* "$root"/etc/network/interfaces.d/*
    case $name in
        debian-eni)
            printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' \
                >"$root/etc/network/interfaces" ;;
        debian-netplan)
            rm -f "$root/etc/network/interfaces"
            chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1 ;;
    esac
    # Root logs in on the serial console without a password: the tests read
    # the guest's own view (ip route, cloud-init status) through it.
    mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
    printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
        >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
    # Nothing on first boot but systemd, cloud-init and the network: apt's
    # timers and fs scrubbing only slow a TCG boot down.
    chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true
}
if [ "${1:-}" = --customize ]; then customize "$2" "$3"; exit 0; fi

[ "$(id -u)" = 0 ] || { log "must run as root (mmdebstrap root mode, apt-get)"; exit 1; }
case $CACHE in /*) ;; *) log "FRRCTL_IMAGES must be absolute: $CACHE"; exit 1;; esac

# Packages per image on top of mmdebstrap's apt variant (no Recommends).
common=(systemd-sysv linux-image-cloud-amd64 initramfs-tools cloud-init iproute2 iputils-ping)
packages() {
    case $1 in
        debian-eni) echo "${common[*]} ifupdown" ;;
        debian-netplan) echo "${common[*]} netplan.io" ;;
    esac
}

sources_text() { if [ -f "$SOURCES" ]; then cat "$SOURCES"; fi; }

ready() { [ -f "$CACHE/$1-$key/.ok" ]; }

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
# the tests boot the images: a restored cache on a fresh machine needs QEMU too
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

work=
cleanup() {
    # mmdebstrap unmounts its own /proc, /sys, /dev; a kill mid-hook may not.
    if [ -n "$work" ] && [ -d "$work" ]; then
        umount -R "$work/root" 2>/dev/null || true
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT

mirror=()
[ -f "$SOURCES" ] && mirror=("$SOURCES")
aptopts=()
# A mirror pinned to a snapshot has an expired Release file; follow the host.
if apt-config dump 2>/dev/null | grep -q 'Acquire::Check-Valid-Until "false"'; then
    aptopts+=(--aptopt='Acquire::Check-Valid-Until "false"')
fi

build() {
    local name=$1 out=$CACHE/$1-$key started
    started=$(date +%s)
    rm -rf "$out" "$out.tmp"
    work=$(mktemp -d "$CACHE/.build-$name-XXXXXX")
    log "$name: mmdebstrap $SUITE ($(packages "$name"))"
    mmdebstrap --quiet --mode=root --variant=apt --format=directory \
        --include="$(packages "$name" | tr ' ' ,)" \
        "${aptopts[@]}" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook="bash $(printf %q "$0") --customize $name \"\$1\"" \
        "$SUITE" "$work/root" "${mirror[@]}" >&2
    log "$name: root tree $(du -sh --one-file-system "$work/root" | cut -f1), $(( $(date +%s) - started )) s"

    mkdir -p "$out.tmp"
    cp "$work"/root/boot/vmlinuz-* "$out.tmp/vmlinuz"
    cp "$work"/root/boot/initrd.img-* "$out.tmp/initrd.img"
    log "$name: ext4 root file system"
    # A raw ext4 image with no partition table (root=/dev/vda), filled from
    # the tree without a loop mount; 1 GiB sparse, then qcow2.
    mkfs.ext4 -q -F -L root -d "$work/root" "$work/root.raw" 1G >&2
    qemu-img convert -q -c -f raw -O qcow2 "$work/root.raw" "$out.tmp/root.qcow2"
    local secs=$(( $(date +%s) - started ))
    echo "built $(date -u +%FT%TZ) in ${secs}s, root.qcow2 $(du -h "$out.tmp/root.qcow2" | cut -f1)," \
         "kernel+initrd $(du -ch "$out.tmp/vmlinuz" "$out.tmp/initrd.img" | tail -n1 | cut -f1)" \
         >"$out.tmp/.ok"
    mv "$out.tmp" "$out"
    ln -sfn "$name-$key" "$CACHE/$name"
    rm -rf --one-file-system "$work"
    work=
    log "$name: $(cat "$out/.ok")"
}

# The key: everything that shapes an image (not this script's other lines).
key=$( { declare -f packages customize build; echo "${common[*]} $SUITE"; sources_text; } \
       | sha256sum | cut -c1-12)

for i in "${IMAGES[@]}"; do
    if ready "$i"; then
        ln -sfn "$i-$key" "$CACHE/$i"
        log "$i: reusing $CACHE/$i-$key ($(cat "$CACHE/$i-$key/.ok"))"
    else
        build "$i"
    fi
done
# Older builds (another key) are dead weight.
for d in "$CACHE"/debian-*-*/; do
    d=${d%/}
    [ -L "$d" ] || case $d in *-"$key") ;; *) rm -rf --one-file-system "$d" ;; esac
done
echo "$CACHE"
