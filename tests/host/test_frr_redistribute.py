"""What `instance plug` installs is what FRR announces: real zebra + bgpd and an upstream.

The host namespace gets its bridge from `frrctl host setup` and its VM from
`frrctl instance plug --port`; bgpd redistributes kernel routes on cloudbr0
(route-map only-cloud) and the upstream's BGP table must show exactly the
VM's /32 and /128, and lose them on unplug.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.frr.conftest import UPSTREAM_BGPD, Fabric
from tests.host.conftest import needs_root, sh

pytestmark = [needs_root, pytest.mark.skipif(
    not Path("/usr/lib/frr/bgpd").exists(), reason="needs Debian's frr package"
)]  # fmt: skip

HOST_BGPD = """frr defaults datacenter
hostname fh-host
route-map only-cloud permit 10
 match interface cloudbr0
exit
router bgp 64512
 bgp router-id 198.18.0.0
 no bgp ebgp-requires-policy
 neighbor 198.18.0.1 remote-as 64513
 neighbor 198.18.0.1 timers connect 1
 neighbor 2001:db8:ffff::1 remote-as 64513
 neighbor 2001:db8:ffff::1 timers connect 1
 address-family ipv4 unicast
  redistribute kernel route-map only-cloud
  no neighbor 2001:db8:ffff::1 activate
 exit-address-family
 address-family ipv6 unicast
  redistribute kernel route-map only-cloud
  neighbor 2001:db8:ffff::1 activate
 exit-address-family
"""


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[tuple[Fabric, Path]]:
    from frrctl.frr.sandbox import FrrSandbox

    tag = secrets.token_hex(3)
    host = FrrSandbox(f"fh-{tag}-h")
    upstream: FrrSandbox | None = None
    guest = f"fh-{tag}-g"
    made_guest = False
    try:
        upstream = FrrSandbox(f"fh-{tag}-u")
        host.ns_exec(["ip", "link", "add", "eth-up", "type", "veth", "peer", "name", "eth-host",
                      "netns", upstream.name])  # fmt: skip
        host.ns_exec(["ip", "addr", "add", "198.18.0.0/31", "dev", "eth-up"])
        host.ns_exec(["ip", "addr", "add", "2001:db8:ffff::/127", "dev", "eth-up", "nodad"])
        host.ns_exec(["ip", "link", "set", "eth-up", "up"])
        upstream.ns_exec(["ip", "addr", "add", "198.18.0.1/31", "dev", "eth-host"])
        upstream.ns_exec(["ip", "addr", "add", "2001:db8:ffff::1/127", "dev", "eth-host", "nodad"])
        upstream.ns_exec(["ip", "link", "set", "eth-host", "up"])
        host.ns_exec([sys.executable, "-m", "frrctl.cli", "host", "setup", "--state-dir",
                      str(tmp_path)])  # fmt: skip
        # the VM: its own namespace, a veth whose host end is the port
        sh("ip", "netns", "add", guest)
        made_guest = True
        host.ns_exec(["ip", "link", "add", "vmport", "type", "veth", "peer", "name", "eth0",
                      "netns", guest])  # fmt: skip
        sh("ip", "-n", guest, "link", "set", "eth0", "address", "52:54:00:00:00:21", "up")
        for sandbox in (host, upstream):
            sandbox.start("zebra", f"hostname {sandbox.name}\n")
        host.start("bgpd", HOST_BGPD)
        upstream.start("bgpd", UPSTREAM_BGPD)
        fab = Fabric(host, upstream)
        fab.wait_established()
        yield fab, tmp_path
    finally:
        if made_guest:
            sh("ip", "netns", "del", guest, check=False)
        if upstream is not None:
            upstream.close()
        host.close()


def test_plugged_vm_is_announced_and_withdrawn(fabric: tuple[Fabric, Path]) -> None:
    fab, state = fabric
    cli = [sys.executable, "-m", "frrctl.cli", "instance"]
    want = {"192.0.2.21/32", "2001:db8:100::21/128"}
    plug = ["plug", "vm21", "--mac", "52:54:00:00:00:21", "--ip", "192.0.2.21",
            "2001:db8:100::21", "--port", "vmport", "--state-dir", str(state)]  # fmt: skip
    fab.host.ns_exec([*cli, *plug])
    got = fab.wait_upstream(lambda p: want <= p)
    assert got == want  # exactly the VM's host routes, nothing else from the bridge
    fab.host.ns_exec([*cli, "unplug", "vm21", "--state-dir", str(state)])
    fab.wait_upstream(lambda p: not (p & want))
