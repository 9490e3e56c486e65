"""Guest network config checked by Debian's cloud-init itself, and the ConfigDrive ISO read back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from frrctl.errors import UsageError
from frrctl.guest.configdrive import DriveSpec, build_iso
from frrctl.guest.netconfig import GuestNet, ip_commands, network_data, render, windows

MAC = "52:54:00:12:34:56"
ADDRS = ["192.0.2.30", "198.51.100.4/32", "2001:db8:100::80", "2001:db8:100::81/128"]
SYSTEM_PY = "/usr/bin/python3"

needs_cloud_init = pytest.mark.skipif(
    shutil.which("cloud-init") is None, reason="needs Debian's cloud-init (cloud-init devel)"
)
needs_isoinfo = pytest.mark.skipif(
    shutil.which("isoinfo") is None or shutil.which("genisoimage") is None,
    reason="needs genisoimage (isoinfo)",
)


def _net(**kw: object) -> GuestNet:
    return GuestNet.parse(MAC, ADDRS, ["192.0.2.53", "2001:db8::53"], **kw)  # type: ignore[arg-type]


def _convert(src: Path, kind: str, out_fmt: str, dest: Path) -> dict[str, str]:
    """Run `cloud-init devel net-convert`; return the files it wrote (path -> text)."""
    cmd = ["cloud-init", "devel", "net-convert", "-p", str(src), "-k", kind, "-d", str(dest),
           "-D", "debian", "-O", out_fmt]  # fmt: skip
    if kind == "network_data.json":
        cmd += ["-m", f"eth0,{MAC}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    return {str(p.relative_to(dest)): p.read_text() for p in dest.rglob("*") if p.is_file()}


def _only(files: dict[str, str], suffix: str) -> str:
    found = [text for path, text in files.items() if path.endswith(suffix)]
    assert len(found) == 1, sorted(files)
    return found[0]


# -- pure rendering ------------------------------------------------------------
def test_netplan_v2_shape() -> None:
    doc = yaml.safe_load(render(_net(), "netplan"))
    eth = doc["network"]["ethernets"]["eth0"]
    assert doc["network"]["version"] == 2
    assert eth["match"] == {"macaddress": MAC}
    assert eth["addresses"] == [
        "192.0.2.30/32", "198.51.100.4/32", "2001:db8:100::80/128", "2001:db8:100::81/128",
    ]  # fmt: skip
    assert eth["accept-ra"] is False and eth["dhcp4"] is False and eth["dhcp6"] is False
    assert eth["gateway4"] == "169.254.0.1" and eth["gateway6"] == "fe80::1"
    assert eth["routes"] == [{"to": "169.254.0.1/32", "via": "0.0.0.0"}]
    assert eth["nameservers"] == {"addresses": ["192.0.2.53", "2001:db8::53"]}


def test_single_family_guests_get_only_their_gateway() -> None:
    v4 = GuestNet.parse(MAC, ["192.0.2.30"])
    v6 = GuestNet.parse(MAC, ["2001:db8:100::80"])
    eth4 = yaml.safe_load(render(v4, "netplan"))["network"]["ethernets"]["eth0"]
    eth6 = yaml.safe_load(render(v6, "netplan"))["network"]["ethernets"]["eth0"]
    assert eth4["gateway4"] == "169.254.0.1" and "gateway6" not in eth4
    assert "routes" not in eth6 and "gateway4" not in eth6 and eth6["gateway6"] == "fe80::1"
    assert [n["type"] for n in network_data(v6)["networks"]] == ["ipv6"]
    assert "-NextHop fe80::1" not in windows(v4) and "-NextHop 169.254.0.1" not in windows(v6)
    assert "nameservers" not in yaml.safe_load(render(v4, "netplan"))["network"]["ethernets"][
        "eth0"]  # fmt: skip


def test_windows_commands() -> None:
    text = windows(_net())
    assert "$_.MacAddress -eq '52-54-00-12-34-56'" in text
    assert "-IPAddress 192.0.2.30 -PrefixLength 32" in text
    assert "-IPAddress 2001:db8:100::80 -PrefixLength 128" in text
    # on-link: a route to the gateway with no next hop, then the default via it
    assert text.index("-DestinationPrefix 169.254.0.1/32 -NextHop 0.0.0.0") < text.index(
        "-DestinationPrefix 0.0.0.0/0 -NextHop 169.254.0.1"
    )
    assert "-DestinationPrefix ::/0 -NextHop fe80::1" in text
    assert "-RouterDiscovery Disabled" in text
    assert "-ServerAddresses '192.0.2.53','2001:db8::53'" in text
    assert text.endswith("\r\n")


def test_ip_commands_configure_exactly_a_vm() -> None:
    cmds = [" ".join(c) for c in ip_commands(_net(), "eth0")]
    assert cmds[:2] == [f"ip link set dev eth0 address {MAC}", "ip link set dev eth0 up"]
    assert "ip addr add 192.0.2.30/32 dev eth0" in cmds
    assert "ip -6 addr add 2001:db8:100::80/128 dev eth0 nodad" in cmds
    assert cmds[-2:] == [
        "ip route add default via 169.254.0.1 dev eth0 onlink",
        "ip -6 route add default via fe80::1 dev eth0",
    ]


@pytest.mark.parametrize(
    ("mac", "addrs", "dns", "message"),
    [
        ("52:54:00:12:34", ["192.0.2.30"], [], "malformed"),
        (MAC, ["192.0.2.0/24"], [], "not a host address"),
        (MAC, ["bogus"], [], "not an IPv4 or IPv6 address"),
        (MAC, [], [], "at least one"),
        (MAC, ["192.0.2.30"], ["nope"], "--dns"),
    ],
)
def test_bad_input_is_a_usage_error(
    mac: str, addrs: list[str], dns: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        GuestNet.parse(mac, addrs, dns)


def test_cli_guest_config_formats() -> None:
    base = [sys.executable, "-m", "frrctl.cli", "guest-config", "--mac", MAC, "--ip", "192.0.2.30",
            "2001:db8:100::80", "--dns", "192.0.2.53"]  # fmt: skip
    for fmt in ("netplan", "network-data", "windows", "ip", "json"):
        proc = subprocess.run([*base, "--format", fmt], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "192.0.2.30" in proc.stdout
    bad = subprocess.run([*base[:-3], "192.0.2.0/30", "--format", "netplan"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "not a host address" in bad.stderr


# -- cloud-init's own parser -----------------------------------------------------
@needs_cloud_init
def test_cloud_init_reads_our_v2_config(tmp_path: Path) -> None:
    src = tmp_path / "network-config.yaml"
    src.write_text(render(_net(), "netplan"))
    # netplan renderer: cloud-init validates our v2 and passes it through
    out = yaml.safe_load(_only(_convert(src, "yaml", "netplan", tmp_path / "np"), ".yaml"))
    eth = out["network"]["ethernets"]["eth0"]
    assert "192.0.2.30/32" in eth["addresses"] and "2001:db8:100::80/128" in eth["addresses"]
    assert eth["routes"] == [{"to": "169.254.0.1/32", "via": "0.0.0.0"}]
    assert eth["gateway4"] == "169.254.0.1" and eth["gateway6"] == "fe80::1"
    assert eth["match"]["macaddress"] == MAC and eth["accept-ra"] is False
    # networkd / ENI renderers of cloud-init 22.4 (which drop on-link): the gateways
    # arrive as networkd's Gateway= next to the link route, as ifupdown's `gateway`
    nd = _only(_convert(src, "yaml", "networkd", tmp_path / "nd"), ".network")
    assert "Address=192.0.2.30/32" in nd and "Address=2001:db8:100::81/128" in nd
    assert "Destination=169.254.0.1/32" in nd
    assert "Gateway=169.254.0.1" in nd and "Gateway=fe80::1" in nd
    assert "::/64" not in nd
    assert f"MACAddress={MAC}" in nd
    eni = _only(_convert(src, "yaml", "eni", tmp_path / "eni"), "50-cloud-init")
    assert "address 192.0.2.30/32" in eni and "address 2001:db8:100::80/128" in eni
    assert "gateway 169.254.0.1" in eni and "gateway fe80::1" in eni
    assert "default gw" not in eni and "::/64" not in eni


@needs_cloud_init
def test_cloud_init_reads_our_network_data(tmp_path: Path) -> None:
    """ConfigDrive path: network_data.json -> netplan/networkd/ENI, usable on-link gateways."""
    src = tmp_path / "network_data.json"
    src.write_text(render(_net(), "network-data"))

    out = yaml.safe_load(_only(_convert(src, "network_data.json", "netplan", tmp_path / "np"),
                               ".yaml"))  # fmt: skip
    eth = out["network"]["ethernets"]["eth0"]
    assert eth["addresses"] == [
        "192.0.2.30/32", "198.51.100.4/32", "2001:db8:100::80/128", "2001:db8:100::81/128",
    ]  # fmt: skip
    assert eth["match"]["macaddress"] == MAC and eth["accept-ra"] is False
    # the gateways are the networks' own (netplan: gateway4/gateway6); the link route
    # to 169.254.0.1 makes the IPv4 one reachable without on-link
    assert eth["routes"] == [{"to": "169.254.0.1/32", "via": "0.0.0.0"}]
    assert eth["gateway4"] == "169.254.0.1" and eth["gateway6"] == "fe80::1"
    assert eth["nameservers"]["addresses"] == ["192.0.2.53", "2001:db8::53"]

    nd = _only(_convert(src, "network_data.json", "networkd", tmp_path / "nd"), ".network")
    assert "Address=192.0.2.30/32" in nd and "Address=2001:db8:100::80/128" in nd
    assert "Destination=169.254.0.1/32" in nd
    assert "Gateway=169.254.0.1" in nd and "Gateway=fe80::1" in nd

    eni = _only(_convert(src, "network_data.json", "eni", tmp_path / "eni"), "50-cloud-init")
    assert "address 192.0.2.30/32" in eni and "address 2001:db8:100::80/128" in eni
    # ifupdown's own `gateway` (ip route add default via GW dev eth0 onlink), never
    # net-tools' device-less `route add ... default gw`, which fails for fe80::1
    assert "gateway 169.254.0.1" in eni and "pointopoint 169.254.0.1" in eni
    assert "gateway fe80::1" in eni
    assert "default gw" not in eni


# -- ConfigDrive ISO -------------------------------------------------------------
def _iso_read(iso: Path, path: str) -> bytes:
    proc = subprocess.run(["isoinfo", "-i", str(iso), "-J", "-x", path], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@needs_isoinfo
def test_configdrive_iso_reads_back(tmp_path: Path) -> None:
    iso = tmp_path / "cd.iso"
    user_data = b"#cloud-config\nhostname: vm1\n"
    spec = DriveSpec(net=_net(), hostname="vm1", user_data=user_data, instance_id="i-0001",
                     public_keys={"key-0": "ssh-ed25519 AAAAC3Nza test"})  # fmt: skip
    report = build_iso(spec, iso)
    assert report["label"] == "config-2"
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True).stdout
    assert "Volume id: config-2" in info
    listing = subprocess.run(["isoinfo", "-i", str(iso), "-J", "-f"], capture_output=True,
                             text=True).stdout.split()  # fmt: skip
    assert "/openstack/latest/meta_data.json" in listing
    assert "/openstack/latest/network_data.json" in listing
    assert "/openstack/latest/user_data" in listing
    meta = json.loads(_iso_read(iso, "/openstack/latest/meta_data.json"))
    assert meta["uuid"] == "i-0001" and meta["hostname"] == "vm1"
    assert meta["public_keys"] == {"key-0": "ssh-ed25519 AAAAC3Nza test"}
    assert json.loads(_iso_read(iso, "/openstack/latest/network_data.json")) == network_data(_net())
    assert _iso_read(iso, "/openstack/latest/user_data") == user_data
    assert not list(tmp_path.glob(".cd.iso.*"))  # no temporary left behind


@needs_isoinfo
@needs_cloud_init
def test_cloud_init_configdrive_datasource_reads_the_iso(tmp_path: Path) -> None:
    """Extract the ISO (no mount) and let cloud-init's ConfigDrive reader parse it."""
    if not Path(SYSTEM_PY).exists():
        pytest.skip("needs the system python with cloud-init")
    iso = tmp_path / "cd.iso"
    cli = [sys.executable, "-m", "frrctl.cli", "configdrive", "--out", str(iso), "--mac", MAC,
           "--ip", "192.0.2.30", "2001:db8:100::80", "--dns", "192.0.2.53", "--hostname",
           "vm7", "--instance-id", "i-0007", "--json"]  # fmt: skip
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "drive"
    for name in json.loads(proc.stdout)["files"]:
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(_iso_read(iso, "/" + name))
    script = (
        "import json, sys\n"
        "from cloudinit.sources.DataSourceConfigDrive import read_config_drive\n"
        "from cloudinit.sources.helpers import openstack\n"
        "r = read_config_drive(sys.argv[1])\n"
        "cfg = openstack.convert_net_json(r['networkdata'], known_macs={sys.argv[2]: 'eth0'})\n"
        "print(json.dumps({'uuid': r['metadata']['uuid'], 'hostname': r['metadata']['hostname'],"
        " 'net': cfg}))\n"
    )
    out = subprocess.run([SYSTEM_PY, "-c", script, str(root), MAC], capture_output=True,
                         text=True)  # fmt: skip
    if out.returncode != 0 and "No module named 'cloudinit'" in out.stderr:
        pytest.skip("system python has no cloudinit module")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["uuid"] == "i-0007" and data["hostname"] == "vm7"
    phys = next(c for c in data["net"]["config"] if c["type"] == "physical")
    assert phys["name"] == "eth0" and phys["mac_address"] == MAC
    subnets = {s["address"]: s for s in phys["subnets"]}
    assert subnets["192.0.2.30"]["netmask"] == "255.255.255.255"
    assert subnets["2001:db8:100::80"]["type"] == "static6"
    assert subnets["192.0.2.30"]["gateway"] == "169.254.0.1"
    assert subnets["2001:db8:100::80"]["gateway"] == "fe80::1"


def test_help_marks_every_unsupported_renderer() -> None:
    from frrctl.guest.support import MATRIX

    proc = subprocess.run([sys.executable, "-m", "frrctl.cli", "guest-config", "--help"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for row in MATRIX:
        status = "supported" if row.supported else "UNSUPPORTED"
        assert f"{row.renderer} <- {row.source}: {status}." in text
    assert {(r.renderer, r.source) for r in MATRIX if not r.supported} == {
        ("sysconfig", "network-data"), ("sysconfig", "netplan"),
    }  # fmt: skip


def test_ra_refused_follows_what_each_renderer_writes() -> None:
    from frrctl.guest.support import ra_refused

    assert ra_refused("eni", "network-data", has_v6=True)
    assert not ra_refused("eni", "network-data", has_v6=False)
    assert ra_refused("netplan", "netplan", has_v6=False)
    assert not ra_refused("networkd", "network-data", has_v6=True)
