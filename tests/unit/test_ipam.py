"""The SQLite allocator: pools as the inventory reads them, every address usable, races."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from frrctl.errors import FrrctlError, UsageError
from frrctl.ipam import Ipam
from frrctl.pools import Pools


@pytest.fixture
def ipam(tmp_path: Path) -> Ipam:
    with Ipam(tmp_path / "ipam.db") as db:
        yield db  # type: ignore[misc]


def test_every_address_of_a_slash24_is_usable(ipam: Ipam) -> None:
    ipam.add(["192.0.2.0/24"])
    got = [ipam.allocate(f"vm{i}") for i in range(256)]
    assert got[0] == ipaddress.ip_address("192.0.2.0")
    assert got[-1] == ipaddress.ip_address("192.0.2.255")
    assert len(set(got)) == 256
    with pytest.raises(FrrctlError, match="no free IPv4 address"):
        ipam.allocate("vm-late")


def test_ipv4_and_ipv6_are_independent_and_ranges_non_contiguous(ipam: Ipam) -> None:
    ipam.add(["198.51.100.7", "203.0.113.10-203.0.113.11", "2001:db8:100::/126"])
    assert [str(ipam.allocate("a")) for _ in range(3)] == [
        "198.51.100.7", "203.0.113.10", "203.0.113.11",
    ]  # fmt: skip
    assert str(ipam.allocate("b", version=6)) == "2001:db8:100::"
    with pytest.raises(FrrctlError, match="no free IPv4"):
        ipam.allocate("c", version=4)
    assert str(ipam.allocate("c", version=6)) == "2001:db8:100::1"


def test_given_address_release_and_reuse(ipam: Ipam) -> None:
    ipam.add(["192.0.2.0/30"])
    assert str(ipam.allocate("vm1", address="192.0.2.2")) == "192.0.2.2"
    assert str(ipam.allocate("vm1", address="192.0.2.2")) == "192.0.2.2"  # idempotent
    with pytest.raises(FrrctlError, match="already allocated to instance vm1"):
        ipam.allocate("vm2", address="192.0.2.2")
    with pytest.raises(FrrctlError, match="not in any pool"):
        ipam.allocate("vm2", address="198.51.100.1")
    assert [str(ipam.allocate("vm2")) for _ in range(3)] == [
        "192.0.2.0", "192.0.2.1", "192.0.2.3",
    ]  # fmt: skip
    released = ipam.release(["192.0.2.1"])
    assert [str(a.address) for a in released] == ["192.0.2.1"]
    assert ipam.release(["192.0.2.1"]) == []  # already free: no-op
    assert str(ipam.allocate("vm3")) == "192.0.2.1"
    assert sorted(str(a.address) for a in ipam.release(instance="vm2")) == [
        "192.0.2.0", "192.0.2.3",
    ]  # fmt: skip
    with pytest.raises(FrrctlError, match="belongs to instance vm1"):
        ipam.release(["192.0.2.2"], instance="vm3")


def test_add_is_idempotent_and_rejects_overlap(ipam: Ipam) -> None:
    assert ipam.add(["192.0.2.0/25"]) == ["192.0.2.0/25"]
    assert ipam.add(["192.0.2.0/25"]) == []
    assert ipam.add(["192.0.2.0-192.0.2.127"]) == []  # same range, other spelling
    with pytest.raises(UsageError, match="overlaps"):
        ipam.add(["192.0.2.100-192.0.2.200"])
    with pytest.raises(UsageError, match="overlaps"):
        ipam.add(["192.0.2.127"], pool="other")
    with pytest.raises(UsageError, match="not an address, prefix or range"):
        ipam.add(["192.0.2.0/33"])
    with pytest.raises(UsageError, match="ends before it starts"):
        ipam.add(["192.0.2.9-192.0.2.1"])
    # a failed add adds nothing, even its valid entries
    with pytest.raises(UsageError):
        ipam.add(["198.51.100.0/24", "192.0.2.5"])
    assert [e.text for _, e in ipam.entries()] == ["192.0.2.0/25"]


def test_remove_refuses_while_in_use(ipam: Ipam) -> None:
    ipam.add(["192.0.2.0/28", "2001:db8::/120"])
    ipam.allocate("vm1")
    with pytest.raises(FrrctlError, match="still has 1 allocated"):
        ipam.remove(["192.0.2.0/28"])
    with pytest.raises(UsageError, match="is not a pool entry"):
        ipam.remove(["192.0.2.0/27"])
    assert ipam.remove(["2001:db8::/120"]) == ["2001:db8::/120"]
    assert ipam.remove(["192.0.2.0/28"], force=True) == ["192.0.2.0/28"]


def test_named_pools(ipam: Ipam) -> None:
    ipam.add(["192.0.2.0/31"], pool="a")
    ipam.add(["198.51.100.0/31"], pool="b")
    assert str(ipam.allocate("x", pool="b")) == "198.51.100.0"
    assert str(ipam.allocate("x", pool="a")) == "192.0.2.0"
    summary = ipam.summary("b")
    assert [e["entry"] for e in summary["entries"]] == ["198.51.100.0/31"]
    assert summary["allocations"] == [{"address": "198.51.100.0", "instance": "x"}]


def test_inventory_pools_and_allocator_agree(ipam: Ipam) -> None:
    texts4 = ["192.0.2.0/28", "198.51.100.10-198.51.100.12", "203.0.113.99"]
    texts6 = ["2001:db8:100::/124"]
    pools = Pools.parse(texts4, texts6)
    ipam.add([*texts4, *texts6])
    got = []
    for version in (4, 6):
        while True:
            try:
                got.append(ipam.allocate("vm", version=version))
            except FrrctlError:
                break
    expected = [a for e in (*pools.ipv4, *pools.ipv6) for a in e.addresses()]
    assert sorted(got, key=lambda a: (a.version, int(a))) == expected
    assert all(a in pools for a in got)


def test_parallel_processes_never_share_an_address(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    with Ipam(db) as ipam:
        ipam.add(["198.18.0.0/26", "2001:db8:ff::/122"])
    code = (
        "import sys\n"
        "from frrctl.ipam import Ipam\n"
        "ipam = Ipam(sys.argv[1])\n"
        "for i in range(16):\n"
        "    print(ipam.allocate(f'p{sys.argv[2]}-{i}', version=4 if i % 2 else 6))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    outputs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    addresses = [line for out, _ in outputs for line in out.split()]
    assert len(addresses) == 128
    assert len(set(addresses)) == 128  # 64 IPv4 + 64 IPv6, all distinct: the pools exactly
    with Ipam(db) as ipam:
        with pytest.raises(FrrctlError, match="no free"):
            ipam.allocate("late")
        assert len(ipam.allocations()) == 128


def test_cli_pool_roundtrip(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")

    def cli(*argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "frrctl.cli", "pool", *argv, "--db", db],
                              capture_output=True, text=True)  # fmt: skip
        assert (proc.returncode == 0) == ok, proc.stderr
        return proc

    cli("add", "192.0.2.0/24", "2001:db8:100::/120")
    assert cli("allocate", "vm1").stdout.strip() == "192.0.2.0"
    assert json.loads(cli("allocate", "vm1", "-6", "--json").stdout) == {
        "instance": "vm1", "address": "2001:db8:100::",
    }  # fmt: skip
    bad = cli("allocate", "vm2", "--ip", "192.0.2.0", ok=False)
    assert bad.returncode == 1 and "already allocated to instance vm1" in bad.stderr
    usage = cli("add", "192.0.2.0/33", ok=False)
    assert usage.returncode == 2
    listing = json.loads(cli("list", "--json").stdout)
    assert [(e["entry"], e["used"], e["size"]) for e in listing["entries"]] == [
        ("192.0.2.0/24", 1, 256), ("2001:db8:100::/120", 1, 256),
    ]  # fmt: skip
    released = json.loads(cli("release", "--instance", "vm1", "--json").stdout)["released"]
    assert {r["address"] for r in released} == {"192.0.2.0", "2001:db8:100::"}


def test_cli_pool_add_from_inventory(tmp_path: Path) -> None:
    from frrctl.inventory import load_inventory

    fleet_file = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
    if not fleet_file.exists():
        pytest.skip("examples/fleet.yaml not present")
    db = str(tmp_path / "inv.db")
    proc = subprocess.run([sys.executable, "-m", "frrctl.cli", "pool", "add", "--inventory",
                           str(fleet_file), "--db", db, "--json"], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pools = load_inventory(fleet_file).fabric.pools.build()
    assert json.loads(proc.stdout)["added"] == [e.text for e in (*pools.ipv4, *pools.ipv6)]
    with Ipam(Path(db)) as ipam:
        for version in (4, 6):
            for _ in range(70):
                addr = ipam.allocate("vm", version=version)
                assert addr in pools
