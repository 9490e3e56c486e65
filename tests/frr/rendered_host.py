"""A rendered host's frr.conf running in real FRR, in throw-away namespaces (tests only)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from frrctl.inventory import Fleet
from frrctl.lab import netns
from frrctl.lab.frrproc import enabled_daemons, prepare_dir, start_frr


@contextmanager
def running_host(fleet: Fleet, hostname: str, files: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """The host's rendered frr.conf loaded into its daemons, in a namespace of its own
    with its uplinks (veths to a peer namespace) and the bridge; yields (ns, vty dir)."""
    tag = secrets.token_hex(3)
    ns, peer = f"rf{tag}-{hostname}", f"rf{tag}-peer"
    workdir = Path(f"/run/frrctl-rf-{tag}")  # not under tmp_path: FRR runs as user frr
    try:
        netns.add_namespace(ns)
        netns.add_namespace(peer)
        for uplink in fleet.host(hostname).uplinks:
            netns.veth(ns, uplink.interface, peer, uplink.interface)
            netns.ip(ns, "link", "set", uplink.interface, "up")
            for address in uplink.addresses:
                netns.ip(ns, "addr", "add", address, "dev", uplink.interface)
        netns.ip(ns, "link", "add", "cloudbr0", "type", "bridge")
        prepare_dir(workdir)
        conf = workdir / "frr.conf"
        conf.write_text(files["frr.conf"])
        start_frr(ns, hostname, workdir, ["zebra", *enabled_daemons(files["daemons"])], conf)
        yield ns, workdir / "vty"
    finally:
        netns.delete_namespace(ns)
        netns.delete_namespace(peer)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)
        shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)
