"""The per-namespace libvirtd: private directories, its own host UUID, nothing left after stop."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from frrctl.guest import tinyvm
from frrctl.libvirt.sandbox import Sandbox, netns_pids
from tests.libvirt.lvharness import sh, skip_reason

pytestmark = pytest.mark.slow


def test_sandbox_is_private_and_stop_leaves_nothing(guest_image: Path, tmp_path: Path) -> None:
    if reason := skip_reason():
        pytest.skip(reason)
    prefix = f"lvs-{secrets.token_hex(3)}"
    nss = [f"{prefix}-a", f"{prefix}-b"]
    boxes = [Sandbox(ns, Path(f"/run/{ns}")) for ns in nss]
    host_sock = Path("/run/libvirt/libvirt-sock")
    had_host_sock = host_sock.exists()
    try:
        for ns, box in zip(nss, boxes, strict=True):
            sh("ip", "netns", "add", ns)
            box.start()
        uuids = [b.virsh("capabilities").stdout.split("<uuid>")[1].split("<")[0] for b in boxes]
        assert uuids == [b.host_uuid for b in boxes] and uuids[0] != uuids[1]
        assert host_sock.exists() == had_host_sock  # the machine's /run/libvirt is untouched
        xml = tinyvm.domain_xml(
            f"{prefix}-vm", "52:54:00:4c:59:01", f"{prefix[-6:]}t", ["192.0.2.170"],
            tmp_path / "console", image=guest_image,
        )  # fmt: skip
        (tmp_path / "vm.xml").write_text(xml)
        boxes[0].virsh("create", str(tmp_path / "vm.xml"))
        assert boxes[0].virsh("list", "--name").stdout.split() == [f"{prefix}-vm"]
        assert boxes[1].virsh("list", "--all", "--name").stdout.split() == []  # not shared
        qemu = [p for p in netns_pids(nss[0]) if "qemu" in Path(f"/proc/{p}/exe").resolve().name]
        assert qemu, "QEMU runs in the sandbox's namespace"
        for box in boxes:
            box.stop()
        for ns in nss:
            assert netns_pids(ns) == [], f"processes left in {ns}"
        assert not any(b.root.exists() for b in boxes)
    finally:
        for box in boxes:
            box.stop()
        for ns in nss:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
