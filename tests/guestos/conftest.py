"""Real Debian guests (lab/build-images.sh) booted under QEMU in a host namespace.

The images come from $FRRCTL_IMAGES (lab/test.sh exports it; default
/var/cache/frrctl/images). Missing images fail the tests, unless
FRRCTL_GUESTOS=skip says this machine does not run them.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guestos.vm import Vm
from tests.host.conftest import HostNs, hostns, sh  # noqa: F401  (fixture, reused)

IMAGES = ("debian-eni", "debian-netplan")


def images_dir() -> Path:
    return Path(os.environ.get("FRRCTL_IMAGES", "/var/cache/frrctl/images"))


def image_problem(name: str) -> str | None:
    d = images_dir() / name
    for f in ("root.qcow2", "vmlinuz", "initrd.img"):
        if not (d / f).is_file():
            return f"no guest image {d / f} (run `bash lab/build-images.sh`)"
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if shutil.which(tool) is None:
            return f"needs {tool} (lab/build-images.sh installs it)"
    return None


@pytest.fixture
def image(request: pytest.FixtureRequest) -> Path:
    name: str = request.param
    if problem := image_problem(name):
        if os.environ.get("FRRCTL_GUESTOS") == "skip":
            pytest.skip(f"{problem}; FRRCTL_GUESTOS=skip")
        pytest.fail(problem)
    return images_dir() / name


@pytest.fixture
def vm_factory(hostns: HostNs, tmp_path: Path) -> Iterator[list[Vm]]:  # noqa: F811
    """QEMU processes of the test; every one is killed at the end, also on failure."""
    vms: list[Vm] = []
    try:
        yield vms
    finally:
        for vm in vms:
            vm.stop()


def new_vm(host: HostNs, image: Path, tmp_path: Path, vms: list[Vm]) -> Vm:
    tap = f"{host.prefix[-6:]}tap"
    mac = "52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3))
    run = tmp_path / "vm"
    run.mkdir()
    # a tap in the host namespace: it disappears with the namespace
    host.run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
    vm = Vm(ns=host.ns, image=image, run=run, tap=tap, mac=mac)
    vms.append(vm)
    return vm


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Boot timings of every cell that got that far (user property "guestos"), also on -q."""
    lines = [
        f"{rep.nodeid.rsplit('[', 1)[-1].rstrip(']')}: {value}"
        for reps in terminalreporter.stats.values()
        for rep in reps
        if getattr(rep, "when", None) == "call"
        for key, value in getattr(rep, "user_properties", ())
        if key == "guestos"
    ]
    if lines:
        terminalreporter.section("guest OS boot timings (TCG, from QEMU start)")
        for line in lines:
            terminalreporter.write_line(line)
