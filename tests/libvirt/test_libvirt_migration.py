"""A real live migration between two libvirtds in two hypervisor namespaces.

libvirt's own live migration (virDomainMigrate3, VIR_MIGRATE_LIVE, the same as
`virsh migrate --live`): the two libvirtds talk over their unix sockets and
the QEMU migration stream goes over a unix socket both namespaces can open
(libvirt 9.0 supports `unix://` migration URIs), so no link between the
namespaces is needed. Every route change on both cloudbr0s is recorded by
`ip -tshort monitor route` while it runs: no address may be routed by both
hosts at any instant, the destination plugs only once the guest resumes there.
It prepares (port guard, record) as soon as the guest arrives paused, so the
plug on RESUMED is one netlink batch; a prepared guest that never resumes
there (failed migration, destroy, agent restart meanwhile) leaves nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.libvirt.lvharness import LvHost, wait_for

pytestmark = pytest.mark.slow

MAC = "52:54:00:4c:57:01"
ADDRS = ["192.0.2.150", "2001:db8:100::150"]
_LINE = re.compile(r"^\[(?P<ts>[^\]]+)\]\s+(?P<deleted>Deleted\s+)?(?P<dst>\S+)\s.*dev cloudbr0")


def monitor(h: LvHost, path: Path) -> subprocess.Popen[bytes]:
    with open(path, "wb") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", h.ns, "ip", "-tshort", "monitor", "route"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def changes(path: Path) -> list[tuple[float, str, bool]]:
    """(time, address, routed) for every change of a host route of the guest."""
    out = []
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if m and m["dst"] in ADDRS:
            ts = datetime.fromisoformat(m["ts"]).timestamp()
            out.append((ts, m["dst"], not m["deleted"]))
    return out


def intervals(chs: list[tuple[float, str, bool]], addr: str, start: bool) -> list[list[float]]:
    """When `addr` was routed, from the monitor's start (routed then: `start`) to now."""
    spans: list[list[float]] = [[0.0, float("inf")]] if start else []
    for t, a, routed in chs:
        if a != addr:
            continue
        if routed and (not spans or spans[-1][1] != float("inf")):
            spans.append([t, float("inf")])
        elif not routed and spans and spans[-1][1] == float("inf"):
            spans[-1][1] = t
    return spans


def guarded(h: LvHost, tap: str) -> bool:
    """An nft guard chain hooks `tap`'s ingress on this host."""
    return f'device "{tap}"' in h.run("nft", "list", "chains", "netdev", check=False).stdout


def entries(log: list[dict[str, Any]], instance: str) -> list[str]:
    return [e["msg"] for e in log if e.get("instance") == instance]


def paused_arrival(src: LvHost, dst: LvHost, tag: str, mac: str, addr: str, sock: Path) -> Any:
    """`virsh migrate --live --suspend`: the guest arrives paused and stays paused."""
    import libvirt

    dom = src.start(tag, mac, [addr])
    wait_for(lambda: addr in src.routes(), 15, "plug on the source")
    params = {libvirt.VIR_MIGRATE_PARAM_URI: f"unix://{sock}"}
    new = dom.migrate3(dst.conn, params, libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PAUSED)
    assert new.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    inst = f"{new.name()}@{mac}"
    wait_for(lambda: dst.record().get(inst, {}).get("state") == "prepared", 15, "prepared")
    wait_for(lambda: addr not in src.routes(), 15, "unplug on the source")
    return new


def first(log: list[dict[str, Any]], **match: str) -> dict[str, Any]:
    for e in log:
        if all(e.get(k) == v for k, v in match.items()):
            return e
    raise AssertionError(f"no agent log entry {match}")


def test_live_migration_hands_over(lvpair: list[LvHost], tmp_path: Path) -> None:
    import libvirt

    src, dst = lvpair
    t_create = time.monotonic()
    dom = src.start("mig", MAC, ADDRS)
    name = dom.name()
    wait_for(lambda: set(ADDRS) <= src.routes(), 15, "plug on the source")
    t_plug = time.monotonic() - t_create
    src.wait_booted(name)
    boot = time.monotonic() - t_create
    for a in ADDRS:
        assert src.ping(a), f"guest does not answer on {a} before the migration"
    assert not set(ADDRS) & dst.routes()

    mons = [monitor(h, tmp_path / f"mon{i}.log") for i, h in enumerate(lvpair)]
    try:
        time.sleep(0.3)  # the monitors are listening
        t0 = time.time()
        params = {libvirt.VIR_MIGRATE_PARAM_URI: f"unix://{tmp_path}/migrate.sock"}
        new = dom.migrate3(dst.conn, params, libvirt.VIR_MIGRATE_LIVE)
        t_done = time.time()
        stats = new.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        wait_for(lambda: set(ADDRS) <= dst.routes(), 15, "plug on the destination")
        wait_for(lambda: not set(ADDRS) & src.routes(), 15, "unplug on the source")
        time.sleep(0.3)
    finally:
        for m in mons:
            m.terminate()
            m.wait(5)
    assert new.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    for a in ADDRS:
        assert dst.ping(a), f"guest does not answer on {a} after the migration"
    assert f"{name}@{MAC}" not in src.record()
    assert dst.record()[f"{name}@{MAC}"]["port"] == dst.tap("mig")
    assert dst.record()[f"{name}@{MAC}"]["ok"]
    assert dst.record()[f"{name}@{MAC}"]["state"] == "plugged"

    # never both: the source's routes end before the destination's begin
    sc, dc = changes(tmp_path / "mon0.log"), changes(tmp_path / "mon1.log")
    gaps = []
    for a in ADDRS:
        s_int, d_int = intervals(sc, a, True), intervals(dc, a, False)
        assert len(s_int) == 1 and len(d_int) == 1, (a, s_int, d_int)
        s_end, d_start = s_int[0][1], d_int[0][0]
        assert s_end < d_start, f"{a} routed by both hosts from {d_start} to {s_end}"
        gaps.append(d_start - s_end)

    # the agents' moments: source withdraws on SUSPENDED/MIGRATED, destination prepares
    # on the paused incoming STARTED/MIGRATED and plugs on RESUMED/MIGRATED
    slog, dlog = src.log(), dst.log()
    suspended = first(slog, msg="event", domain=name, event="SUSPENDED", detail="MIGRATED")
    unplugged = first(slog, msg="unplugged", instance=f"{name}@{MAC}")
    started = first(dlog, msg="event", domain=name, event="STARTED", detail="MIGRATED")
    prepared = first(dlog, msg="prepared", instance=f"{name}@{MAC}")
    resumed = first(dlog, msg="event", domain=name, event="RESUMED", detail="MIGRATED")
    plugged = first(dlog, msg="plugged", instance=f"{name}@{MAC}")
    assert unplugged["event"] == "SUSPENDED" and plugged["event"] == "RESUMED"
    assert started["t"] <= prepared["t"] < resumed["t"] <= plugged["t"]
    assert prepared["added"] == []  # prepared: nothing routed, nothing announced
    assert entries(dlog, f"{name}@{MAC}") == ["prepared", "plugged"]
    # the destination routes only after its guest resumed (the source's routes ended before)
    assert min(intervals(dc, a, False)[0][0] for a in ADDRS) >= resumed["t"]
    assert suspended["t"] <= unplugged["routes_t"] <= unplugged["t"]
    assert [e for e in slog if e.get("msg") == "event" and e.get("event") == "STOPPED"]

    figures = {
        "create -> guest ready s": round(boot, 2),
        "create -> plugged s": round(t_plug, 2),
        "migration s": round(t_done - t0, 2),
        "QEMU downtime ms": stats.get("downtime"),
        "source: SUSPENDED -> unplugged ms": round((unplugged["t"] - suspended["t"]) * 1e3, 1),
        "source: SUSPENDED -> routes gone ms": round(
            (unplugged["routes_t"] - suspended["t"]) * 1e3, 1
        ),
        "destination: RESUMED -> plugged ms": round((plugged["t"] - resumed["t"]) * 1e3, 1),
        "destination: plug ms (prepared)": plugged["plug_ms"],
        "destination: prepare ms (on arrival)": prepared["plug_ms"],
        "guest paused (src SUSPENDED -> dst RESUMED) ms": round(
            (resumed["t"] - suspended["t"]) * 1e3, 1
        ),
        "no route on either host ms": [round(g * 1e3, 1) for g in gaps],
    }
    print("\nmigration figures:", figures)
    (tmp_path / "figures.txt").write_text(repr(figures) + "\n")
    new.destroy()
    wait_for(lambda: not set(ADDRS) & dst.routes(), 15, "unplug after destroy")


def test_arrived_paused_is_announced_only_once_resumed(
    lvpair: list[LvHost], tmp_path: Path
) -> None:
    """`virsh migrate --live --suspend`: the guest runs nowhere until it is resumed; the
    destination has it prepared (guarded port, record) but routes nothing."""
    src, dst = lvpair
    mac, addr = "52:54:00:4c:57:02", "192.0.2.151"
    new = paused_arrival(src, dst, "migp", mac, addr, tmp_path / "migrate.sock")
    name, inst = new.name(), f"{new.name()}@{mac}"
    try:
        time.sleep(1.0)
        assert addr not in dst.routes() and addr not in dst.neighbours()  # not running here
        assert guarded(dst, dst.tap("migp"))  # but its port is ready
        assert dst.record()[inst]["ok"]  # prepared is no drift
        assert dst.status()["domains"][name]["prepared"] == [inst]
        new.resume()
        wait_for(lambda: addr in dst.routes(), 15, "plug once resumed")
        assert addr in dst.neighbours() and addr not in src.routes()
        plugged = first(dst.log(), msg="plugged", instance=inst)
        assert plugged["event"] == "RESUMED"
        assert dst.record()[inst]["state"] == "plugged" and dst.record()[inst]["ok"]
        print("\nresume of a prepared instance: plug ms", plugged["plug_ms"])
    finally:
        new.destroy()
    wait_for(lambda: addr not in dst.routes(), 15, "unplug after destroy")


def test_prepared_then_destroyed_leaves_nothing(lvpair: list[LvHost], tmp_path: Path) -> None:
    src, dst = lvpair
    mac, addr = "52:54:00:4c:57:04", "192.0.2.153"
    new = paused_arrival(src, dst, "migd", mac, addr, tmp_path / "migrate.sock")
    inst = f"{new.name()}@{mac}"
    assert guarded(dst, dst.tap("migd"))
    new.destroy()
    wait_for(lambda: inst not in dst.record(), 15, "the prepared instance removed")
    assert not guarded(dst, dst.tap("migd"))
    assert addr not in dst.routes() and addr not in dst.neighbours()
    assert entries(dst.log(), inst) == ["prepared", "unplugged"]


def test_agent_restart_while_prepared(lvpair: list[LvHost], tmp_path: Path) -> None:
    """The agent restarts while a guest sits prepared: it stays prepared (not announced,
    not removed) and is plugged on resume; one destroyed meanwhile is cleaned up."""
    src, dst = lvpair
    mac, addr = "52:54:00:4c:57:05", "192.0.2.154"
    mac2, addr2 = "52:54:00:4c:57:06", "192.0.2.155"
    keep = paused_arrival(src, dst, "migr", mac, addr, tmp_path / "migrate.sock")
    gone = paused_arrival(src, dst, "migs", mac2, addr2, tmp_path / "migrate2.sock")
    inst, inst2 = f"{keep.name()}@{mac}", f"{gone.name()}@{mac2}"
    try:
        dst.stop_agent()
        gone.destroy()  # while nobody watches: its QEMU and tap are gone
        dst.start_agent()
        wait_for(lambda: inst2 not in dst.record(), 15, "the destroyed one cleaned up")
        assert not guarded(dst, dst.tap("migs"))
        time.sleep(1.0)
        assert dst.record()[inst]["state"] == "prepared" and dst.record()[inst]["ok"]
        assert guarded(dst, dst.tap("migr"))
        assert addr not in dst.routes() and addr not in dst.neighbours()
        assert entries(dst.log(), inst) == []  # kept as it was: nothing re-done
        keep.resume()
        wait_for(lambda: addr in dst.routes(), 15, "plug once resumed")
        assert dst.record()[inst]["state"] == "plugged"
    finally:
        keep.destroy()
    wait_for(lambda: addr not in dst.routes(), 15, "unplug after destroy")
    assert inst not in dst.record()


def test_agent_restart_during_an_incoming_migration(lvpair: list[LvHost], tmp_path: Path) -> None:
    """The destination's agent restarts while the guest is still migrating in (no
    STARTED/MIGRATED seen by the new agent): libvirt's job (MIGRATION_IN) tells it, so the
    instance stays prepared, and is plugged when the guest resumes there."""
    import libvirt

    src, dst = lvpair
    mac, addr = "52:54:00:4c:57:07", "192.0.2.156"
    dom = src.start("migj", mac, [addr])
    name, inst = dom.name(), f"{dom.name()}@{mac}"
    wait_for(lambda: addr in src.routes(), 15, "plug on the source")
    src.wait_booted(name)
    params = {
        libvirt.VIR_MIGRATE_PARAM_URI: f"unix://{tmp_path}/migrate.sock",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 8,
    }  # MiB/s: a copy of several seconds
    result: dict[str, Any] = {}

    def migrate() -> None:
        try:
            result["dom"] = dom.migrate3(dst.conn, params, libvirt.VIR_MIGRATE_LIVE)
        except libvirt.libvirtError as exc:
            result["error"] = str(exc)

    th = threading.Thread(target=migrate)
    th.start()
    try:
        wait_for(lambda: dst.record().get(inst, {}).get("state") == "prepared", 30, "prepared")
        dst.stop_agent()
        dst.start_agent()
        time.sleep(1.0)
        assert th.is_alive(), "the migration ended before the agent was back"
        assert dst.record()[inst]["state"] == "prepared"
        assert entries(dst.log(), inst) == []  # the new agent kept it, did not remove it
        assert dst.status()["domains"][name]["migrating_in"]  # libvirt's job told it
        assert addr in src.routes() and addr not in dst.routes()  # the source owns it still
    finally:
        th.join(180)
    assert "dom" in result, result.get("error")
    wait_for(lambda: addr in dst.routes(), 15, "plug once resumed")
    assert addr not in src.routes()
    assert entries(dst.log(), inst) == ["plugged"]
    assert first(dst.log(), msg="plugged", instance=inst)["event"] == "RESUMED"
    result["dom"].destroy()
    wait_for(lambda: addr not in dst.routes(), 15, "unplug after destroy")


def test_failed_migration_source_plugs_again(lvpair: list[LvHost], tmp_path: Path) -> None:
    """The destination dies in the final phase: the source withdrew on the pause, and
    plugs again when its guest resumes; the destination never announced anything."""
    import libvirt

    src, dst = lvpair
    mac, addrs = "52:54:00:4c:57:03", ["192.0.2.152", "2001:db8:100::152"]
    dom = src.start("migf", mac, addrs)
    name = dom.name()
    wait_for(lambda: set(addrs) <= src.routes(), 15, "plug on the source")
    src.wait_booted(name)
    # a long final pause: allowed downtime 5 s at 100 MiB/s, so QEMU pauses the guest
    # for (nearly) the whole copy, and the destination can be killed inside that pause
    dom.migrateSetMaxDowntime(5000, 0)
    params = {libvirt.VIR_MIGRATE_PARAM_URI: f"unix://{tmp_path}/migrate.sock",
              libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100}  # fmt: skip
    result: dict[str, Any] = {}

    def migrate() -> None:
        try:
            result["dom"] = dom.migrate3(dst.conn, params, libvirt.VIR_MIGRATE_LIVE)
        except libvirt.libvirtError as exc:
            result["error"] = str(exc)

    th = threading.Thread(target=migrate)
    th.start()
    try:
        wait_for(lambda: [e for e in src.log() if e.get("domain") == name
                          and e.get("event") == "SUSPENDED" and e.get("detail") == "MIGRATED"],
                 60, "the source's final pause")  # fmt: skip
        os.kill(dst.qemu_pid(name), signal.SIGKILL)
    finally:
        th.join(120)
    assert "error" in result, "the migration was expected to fail"
    wait_for(lambda: set(addrs) <= src.routes(), 15, "the source plugs again")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    slog = [e for e in src.log() if e.get("instance") == f"{name}@{mac}"]
    assert [e["msg"] for e in slog] == ["plugged", "unplugged", "plugged"]
    assert slog[1]["event"] == "SUSPENDED"  # withdrawn on the pause
    # plugged again on RESUMED, or already when it re-read the resumed domain
    assert slog[2]["t"] > slog[1]["t"]
    assert not [e for e in dst.log() if e.get("msg") == "plugged" and name in str(e)]
    assert not set(addrs) & dst.routes()
    # the destination had prepared the arrival, and removed all of it with the failure
    wait_for(lambda: f"{name}@{mac}" not in dst.record(), 15, "the prepared arrival removed")
    assert entries(dst.log(), f"{name}@{mac}") == ["prepared", "unplugged"]
    assert not guarded(dst, dst.tap("migf"))
    for a in addrs:
        assert src.ping(a), f"guest does not answer on {a} after the failed migration"
    dom.destroy()
    wait_for(lambda: not set(addrs) & src.routes(), 15, "unplug after destroy")
