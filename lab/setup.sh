#!/bin/bash
# Install everything frrctl's lab and tests need on a Debian (bookworm) machine,
# run as root. Safe to run again: apt and pip skip what is already there.
#
#   FRRCTL_VENV  virtualenv to create/update (default /opt/frrctl-venv)
#
# Afterwards `frrctl` is on PATH (/usr/local/bin/frrctl -> the venv's script).
set -Eeuo pipefail
trap 'echo "setup: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${FRRCTL_VENV:-/opt/frrctl-venv}
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "setup: run as root (namespaces, apt)" >&2; exit 1; }

APT_PACKAGES=(frr frr-pythontools iproute2 iputils-ping nftables procps psmisc
              cloud-init genisoimage sqlite3 python3-venv
              ifupdown netplan.io  # real guest tools, applied in namespaces by the tests
              # libvirt agent: a real libvirtd + QEMU (TCG), libvirt-python built against it,
              # cpio to pack the tiny test guest (lab/build-guest.sh)
              qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
              libvirt-dev pkg-config gcc python3-dev cpio)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}" >&2
    apt-get update -qq
    # policy-rc.d: never let a package start its service on this machine.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

# libvirtd without libvirt-daemon-system (which would start services): it parses its
# built-in default user libvirt-qemu before reading qemu.conf, and wants these to exist.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 \
    || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt /var/lib/libvirt /var/cache/libvirt /run/libvirt
[ -e /etc/libvirt/qemu.conf ] || printf '# frrctl: defaults (lab/setup.sh)\n' >/etc/libvirt/qemu.conf

PY=$(command -v python3)
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtualenv $VENV" >&2
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q -e "$HERE[dev]"
# libvirt-python of the same version as the C library it compiles against
lv=$(pkg-config --modversion libvirt)
"$VENV/bin/python" -c "import libvirt, sys; sys.exit(libvirt.getVersion() < 1)" 2>/dev/null \
    || "$VENV/bin/pip" install -q "libvirt-python==$lv"
# FRRCTL_NO_LINK=1: leave /usr/local/bin/frrctl alone (a second checkout, CI dry runs).
[ -n "${FRRCTL_NO_LINK:-}" ] || ln -sf "$VENV/bin/frrctl" /usr/local/bin/frrctl
echo "setup: ready ($("$VENV/bin/frrctl" --version 2>/dev/null || echo frrctl))" >&2
