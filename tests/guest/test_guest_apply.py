"""Every supported guest renderer x family, applied for real in a VM namespace.

The host namespace is set up by `frrctl host setup`, the VM plugged with `frrctl instance
plug --port`; the VM namespace's eth0 (a veth with the VM's MAC) is configured from
`frrctl guest-config` output converted by cloud-init 22.4's own renderer and applied by
the guest's tool: ifupdown's ifup (ENI), systemd-networkd (networkd), netplan generate
then systemd-networkd (netplan). Then: the /32 and /128 are on eth0, exactly the
configured families have a default route, the host reaches every address and the guest
its gateways, and a router advertisement sent by the host is refused where the applied
config says so (and only counted, never guessed: the guest's Icmp6InType134 must move).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from frrctl.guest import apply, support
from tests.guest.conftest import netplan_generate, networkd, networkd_skip_reason, veth_match
from tests.host.conftest import Guest, HostNs, needs_root

MAC = "52:54:00:0a:10:01"
V4, V6 = "192.0.2.41", "2001:db8:100::41"
FAMILIES = {"dual": (V4, V6), "v4": (V4, None), "v6": (None, V6)}
RA_PREFIX = "2001:db8:ffff::"

RA_SENDER = """
import sys
from scapy.all import Ether, IPv6, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, sendp
sendp(Ether(dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1")
      / ICMPv6ND_RA(routerlifetime=1800)
      / ICMPv6NDOptPrefixInfo(prefix=sys.argv[2], prefixlen=64, L=1, A=1,
                              validlifetime=1800, preferredlifetime=1800),
      iface=sys.argv[1], verbose=False)
"""

CELLS = [
    pytest.param(r.renderer, r.source, fam, id=f"{r.renderer}-from-{r.source}-{fam}")
    for r in support.MATRIX
    if r.supported
    for fam in FAMILIES
]

needs_tools = pytest.mark.skipif(
    shutil.which("cloud-init") is None or shutil.which("ifup") is None,
    reason="needs cloud-init and ifupdown",
)


def _in6(g: Guest, name: str) -> int:
    """A counter of the guest namespace's /proc/net/snmp6."""
    for line in g.run("cat", "/proc/net/snmp6").stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value.split()[0])
    return 0


def _ra_taken(g: Guest) -> bool:
    """Anything an RA for RA_PREFIX would have configured: an address, a route, a default."""
    net = ipaddress.ip_network(f"{RA_PREFIX}/64")
    addrs = json.loads(g.run("ip", "-j", "-6", "addr", "show", "dev", "eth0").stdout)
    for info in addrs[0]["addr_info"] if addrs else []:
        if ipaddress.ip_address(info["local"]) in net:
            return True
    routes = json.loads(g.run("ip", "-j", "-6", "route", "show", "dev", "eth0").stdout)
    return any(r["dst"] == str(net) or r.get("protocol") == "ra" for r in routes)


@needs_root
@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize(("renderer", "source", "family"), CELLS)
def test_guest_config_applied_for_real(
    hostns: HostNs, tmp_path: Path, renderer: str, source: str, family: str
) -> None:
    if renderer != "eni" and (reason := networkd_skip_reason()):
        pytest.skip(reason)
    v4, v6 = FAMILIES[family]
    hostns.frrctl("host", "setup")
    g = hostns.add_guest("g", MAC, v4, v6, configure=False)
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC, "--ip",
                  *(a for a in (v4, v6) if a), "--port", g.port)  # fmt: skip
    text = hostns.frrctl("guest-config", "--format", source, "--mac", MAC, "--ip",
                         *(a for a in (v4, v6) if a)).stdout  # fmt: skip
    files = apply.convert(text, source, renderer, MAC)
    ifindex = json.loads(g.run("ip", "-j", "link", "show", "eth0").stdout)[0]["ifindex"]
    if renderer == "eni":
        (tmp_path / "interfaces").write_text(files[apply.MAIN_FILE["eni"]])
        apply.ifup(g.ns, tmp_path / "interfaces", "eth0", tmp_path / "ifstate")
        _check(hostns, g, renderer, source)
        return
    if renderer == "netplan":
        generated = netplan_generate(files[apply.MAIN_FILE["netplan"]], tmp_path / "root")
        network = {name: veth_match(t) for name, t in generated.items()}
    else:
        network = {Path(p).name: t for p, t in files.items() if p.endswith(".network")}
    assert network, sorted(files)
    with networkd(g.ns, network, tmp_path / "networkd") as nd:
        took = nd.wait_configured(ifindex)
        print(f"networkd configured eth0 in {took:.1f} s")
        _check(hostns, g, renderer, source)


def _check(host: HostNs, g: Guest, renderer: str, source: str) -> None:
    addrs = json.loads(g.run("ip", "-j", "addr", "show", "dev", "eth0").stdout)[0]["addr_info"]
    have = {(a["local"], a["prefixlen"]) for a in addrs if a.get("scope") == "global"}
    assert have == {(a, 32 if ":" not in a else 128) for a in (g.v4, g.v6) if a}, addrs
    defaults4 = json.loads(g.run("ip", "-j", "-4", "route", "show", "default").stdout)
    defaults6 = json.loads(g.run("ip", "-j", "-6", "route", "show", "default").stdout)
    assert [r["gateway"] for r in defaults4] == (["169.254.0.1"] if g.v4 else []), defaults4
    assert [r["gateway"] for r in defaults6] == (["fe80::1"] if g.v6 else []), defaults6
    for addr in (g.v4, g.v6):
        if addr:
            assert _host_pings(host, addr), f"host cannot reach {addr}"
    if g.v4:
        assert g.ping("169.254.0.1")
    if g.v6:
        assert g.ping("fe80::1%eth0")
    # a router advertisement from the host's bridge: counted by the guest, then refused
    # or taken as the applied configuration decides
    before = _in6(g, "Icmp6InType134")
    assert before == 0, "the host namespace sent router advertisements of its own"
    host.run(sys.executable, "-c", RA_SENDER, "cloudbr0", RA_PREFIX)
    deadline = time.monotonic() + 5
    while _in6(g, "Icmp6InType134") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _in6(g, "Icmp6InType134") > before, "the RA never reached the guest"
    time.sleep(1.5)  # the kernel or networkd acts on an RA within milliseconds
    expected = support.ra_refused(renderer, source, has_v6=g.v6 is not None)
    accept_ra = g.run("sysctl", "-n", "net.ipv6.conf.eth0.accept_ra").stdout.strip()
    assert _ra_taken(g) is not expected, f"RA {'taken' if expected else 'refused'}"
    # ifupdown leaves RAs to the kernel (accept_ra 0 from `inet6 static`); networkd
    # always sets the kernel's to 0 and decides in user space (IPv6AcceptRA=)
    assert accept_ra == ("0" if renderer != "eni" or expected else "1"), accept_ra


def _host_pings(host: HostNs, addr: str) -> bool:
    cmd = ["ping", "-n", "-c", "1", "-W", "2", addr]
    return any(host.run(*cmd, check=False).returncode == 0 for _ in range(3))


@needs_root
@needs_tools
def test_lab_helper_configures_a_debian_guest_without_dad_wait(
    hostns: HostNs, tmp_path: Path
) -> None:
    """The lab's path: network_data.json -> cloud-init ENI -> ifup with dad-attempts 0."""
    from frrctl.guest.netconfig import GuestNet, render

    hostns.frrctl("host", "setup")
    g = hostns.add_guest("g", MAC, V4, V6, configure=False)
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC, "--ip", V4, V6, "--port", g.port)
    data = render(GuestNet.parse(MAC, [V4, V6]), "network-data")
    eni = apply.debian_guest_up(g.ns, data, MAC, tmp_path / "guest", dad=False)
    assert "gateway fe80::1" in eni
    addr6 = json.loads(g.run("ip", "-j", "-6", "addr", "show", "dev", "eth0", "scope",
                             "global").stdout)[0]["addr_info"]  # fmt: skip
    # ifupdown's dad-attempts 0 is `ip -6 addr add ... nodad`: usable at once, no wait
    assert [(a["local"], a.get("nodad", False)) for a in addr6 if "local" in a] == [(V6, True)]
    assert _host_pings(hostns, V4) and _host_pings(hostns, V6)
    assert (tmp_path / "guest" / "ifstate" / "ifstate.eth0").exists()


def test_bad_conversion_is_one_line_error(tmp_path: Path) -> None:
    if shutil.which("cloud-init") is None:
        pytest.skip("needs cloud-init")
    from frrctl.errors import FrrctlError

    with pytest.raises(FrrctlError, match="net-convert -O eni: ") as err:
        apply.convert("{not json", "network-data", "eni", MAC)
    assert "\n" not in str(err.value)
