#!/bin/bash
# Build the tiny test guest: Debian's cloud kernel + a busybox-static initramfs.
#
#   bash lab/build-guest.sh        prints the cache directory (vmlinuz, initrd.img, VERSION)
#
# Nothing is installed on the host: the kernel and busybox .debs are fetched
# with `apt-get download` and unpacked with `dpkg-deb -x`. The guest loads the
# virtio-net modules (in the order they depend on each other), configures its
# addresses the way a routed guest does (/32 and /128, default via 169.254.0.1
# onlink and via fe80::1) from the kernel command line:
#
#   frrctl.ip=192.0.2.10 frrctl.ip=2001:db8::10 [frrctl.mac=52:54:00:..] [frrctl.if=eth0]
#
# or, without those, from /etc/tinyvm.conf inside the initramfs (same words,
# one per line), and answers ping. The ACPI power button (virsh shutdown) powers
# it off; the console prints "tinyvm: ready" once the network is configured.
#
#   FRRCTL_GUEST_CACHE  cache directory (default /var/cache/frrctl/guest)
set -Eeuo pipefail
trap 'echo "build-guest: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

CACHE=${FRRCTL_GUEST_CACHE:-/var/cache/frrctl/guest}
# Bump when the init or the module list changes: the cache is rebuilt.
RECIPE=4
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
         failover net_failover virtio_net evdev button)

mkdir -p "$CACHE"
exec 9>"$CACHE.lock"
flock 9

kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
       | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kpkg" ]; then
    apt-get update -qq
    kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
fi
[ -n "$kpkg" ] || { echo "build-guest: no linux-image-cloud-amd64 in apt" >&2; exit 1; }
want="recipe=$RECIPE kernel=$kpkg"
if [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/initrd.img" ] \
   && [ "$(cat "$CACHE/VERSION" 2>/dev/null)" = "$want" ]; then
    echo "$CACHE"
    exit 0
fi

work=$(mktemp -d /tmp/frrctl-guest.XXXXXX)
chmod 755 "$work"  # apt-get download runs as _apt
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download -q "$kpkg" busybox-static >/dev/null 2>&1 || apt-get download "$kpkg" busybox-static
dpkg-deb -x "$(ls "$kpkg"_*.deb)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb)" bb
kver=${kpkg#linux-image-}
moddir=kernel/lib/modules/$kver

root=$work/root
mkdir -p "$root"/{bin,sbin,etc/acpi/PWRF,proc,sys,dev,tmp,run,var/run,var/log,lib/modules}
cp bb/bin/busybox "$root/bin/busybox"
for applet in sh ip ping sleep cat mount insmod poweroff echo acpid sysctl; do
    ln -s busybox "$root/bin/$applet"
done
n=0
for m in "${MODULES[@]}"; do
    f=$(find "$moddir" -name "$m.ko*" | head -n1)
    if [ -z "$f" ]; then
        # built into this kernel (modules.builtin) or absent: nothing to load
        grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null \
            || echo "build-guest: module $m not found, skipped" >&2
        continue
    fi
    n=$((n + 1))
    dst=$root/lib/modules/$(printf '%02d' $n)-$m.ko
    case "$f" in
        *.xz) xz -dc "$f" >"$dst" ;;
        *.zst) zstd -qdc "$f" >"$dst" ;;
        *.gz) gzip -dc "$f" >"$dst" ;;
        *) cp "$f" "$dst" ;;
    esac
done

printf '#!/bin/sh\npoweroff -f\n' >"$root/etc/acpi/PWRF/00000080"
chmod +x "$root/etc/acpi/PWRF/00000080"
: >"$root/etc/tinyvm.conf"

cat >"$root/init" <<'INIT'
#!/bin/sh
# tinyvm init: modules, a routed guest's addresses, then answer pings forever.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /lib/modules/*.ko; do insmod "$m" 2>/dev/null; done
words="$(cat /proc/cmdline)"
case "$words" in *frrctl.ip=*) ;; *) words="$(cat /etc/tinyvm.conf)" ;; esac
ifname=eth0; mac=""; addrs=""
for w in $words; do
    case "$w" in
        frrctl.ip=*) addrs="$addrs ${w#frrctl.ip=}" ;;
        frrctl.mac=*) mac="${w#frrctl.mac=}" ;;
        frrctl.if=*) ifname="${w#frrctl.if=}" ;;
    esac
done
if [ -n "$mac" ]; then
    for d in /sys/class/net/*; do
        [ "$(cat "$d/address")" = "$mac" ] && ifname="${d##*/}"
    done
fi
ip link set lo up
echo 0 > /proc/sys/net/ipv6/conf/$ifname/accept_dad 2>/dev/null
ip link set "$ifname" up
v4=""; v6=""
for a in $addrs; do
    case "$a" in
        *:*) ip -6 addr add "$a/128" dev "$ifname"; v6=1 ;;
        *) ip addr add "$a/32" dev "$ifname"; v4=1 ;;
    esac
done
[ -n "$v4" ] && ip route add default via 169.254.0.1 dev "$ifname" onlink
[ -n "$v6" ] && ip -6 route add default via fe80::1 dev "$ifname"
acpid
echo "tinyvm: ready $ifname$addrs" > /dev/console
while :; do sleep 3600; done
INIT
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >"$work/initrd.img"
cp "kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
install -m 0644 "$work/vmlinuz" "$CACHE/vmlinuz.new"
install -m 0644 "$work/initrd.img" "$CACHE/initrd.img.new"
mv -f "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
mv -f "$CACHE/initrd.img.new" "$CACHE/initrd.img"
echo "$want" >"$CACHE/VERSION"
echo "$CACHE"
