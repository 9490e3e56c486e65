"""The QEMU command line the guest OS tests use (pure, fast)."""

from __future__ import annotations

from pathlib import Path

from tests.guestos.vm import qemu_argv


def test_qemu_argv_boots_the_cache_through_an_overlay_with_the_configdrive_read_only() -> None:
    run = Path("/r")
    mac = "52:54:00:00:00:09"
    argv = qemu_argv(Path("/c/img"), run / "ov.qcow2", run / "cd.iso", "tap9", mac, run)
    joined = " ".join(argv)
    assert argv[argv.index("-accel") + 1] == "tcg"  # KVM does not work on this machine
    assert argv[argv.index("-kernel") + 1] == "/c/img/vmlinuz"
    assert "root=/dev/vda" in argv[argv.index("-append") + 1]
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    # the root disk first (vda), the cached image only as the overlay's backing file
    assert drives == ["file=/r/ov.qcow2,if=virtio,format=qcow2",
                      "file=/r/cd.iso,if=virtio,format=raw,readonly=on"]  # fmt: skip
    assert "/c/img/root.qcow2" not in joined
    assert "tap,id=n0,ifname=tap9,script=no,downscript=no" in argv
    assert "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:09" in argv
