#!/bin/bash
# The lab demo on the bundled example fleet, on a fresh Debian machine, as root:
# installs what it needs, builds the fabric in network namespaces (vm7 is a
# real QEMU guest, plugged by frrctl's libvirt agent), verifies the prefixes
# the upstream really received, shows the routers, live-migrates vm7 with
# libvirt while the upstream pings it, verifies again, tears down.
# KEEP=1 leaves the lab running (remove it later with `frrctl lab down`).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

bash lab/setup.sh
bash lab/build-guest.sh >/dev/null  # the tiny QEMU guest (cached after the first build)
trap '[ "${KEEP:-0}" = 1 ] || frrctl lab down' EXIT

frrctl lab up --inventory examples/fleet.yaml
state=${FRRCTL_LAB_DIR:-/run/frrctl-lab}
prefix=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['prefix'])" "$state/state.json")
up() { ip netns exec "$prefix-up" vtysh --vty_socket "$state/$prefix/upstream/vty" -c "$1"; }

echo; echo "== upstream router: BGP sessions with the hypervisors and the ExaBGP peer"
up "show bgp summary"
echo "== upstream router: OSPF neighbours and routes from the OSPF hypervisor"
up "show ip ospf neighbor"; up "show ipv6 ospf6 neighbor"
up "show ip route ospf"; up "show ipv6 route ospf6"
echo "== hypervisor hv1: its kernel routes (only the default route was learned)"
ip -n "$prefix-hv1" route; ip -n "$prefix-hv1" -6 route | grep -v '^fe80\|^multicast'
echo "== hv1's libvirt agent: vm7 is a real QEMU guest, plugged from its domain metadata"
frrctl libvirt status --state-dir "$state/$prefix/hv1/frrctl-state"
echo; echo "== lab verify"
frrctl lab verify
echo; echo "== live migration of vm7 hv1 -> hv2 (virsh migrate --live), the upstream pinging it"
frrctl lab migrate vm7 --to hv2
echo; echo "== lab verify after the move"
frrctl lab verify | tail -n1
echo "demo: $(( $(date +%s) - started )) s wall time"
