"""A real OpenStack ConfigDrive: an ISO 9660 (Joliet + Rock Ridge) image, label `config-2`.

Layout (what cloud-init's ConfigDrive datasource reads):

    openstack/latest/meta_data.json     uuid, hostname, name, public_keys
    openstack/latest/network_data.json  the routed guest's network (netconfig)
    openstack/latest/user_data          optional, verbatim
    openstack/latest/vendor_data.json   {}

Built with genisoimage (or xorriso's mkisofs emulation) from a temporary
tree; the image is written next to the target and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError
from frrctl.guest.netconfig import GuestNet, network_data

LABEL = "config-2"


@dataclass
class DriveSpec:
    net: GuestNet
    instance_id: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    hostname: str = "vm"
    user_data: bytes | None = None
    public_keys: dict[str, str] = field(default_factory=dict)


def meta_data(spec: DriveSpec) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": spec.instance_id,
        "hostname": spec.hostname,
        "name": spec.hostname,
        "launch_index": 0,
        "availability_zone": "frrctl",
    }
    if spec.public_keys:
        data["public_keys"] = dict(spec.public_keys)
    return data


def drive_files(spec: DriveSpec) -> dict[str, bytes]:
    base = "openstack/latest/"
    files = {
        base + "meta_data.json": json.dumps(meta_data(spec), indent=2).encode() + b"\n",
        base + "network_data.json": json.dumps(network_data(spec.net), indent=2).encode() + b"\n",
        base + "vendor_data.json": b"{}\n",
    }
    if spec.user_data is not None:
        files[base + "user_data"] = spec.user_data
    return files


def _mkisofs() -> list[str]:
    if path := shutil.which("genisoimage"):
        return [path]
    if path := shutil.which("xorriso"):
        return [path, "-as", "mkisofs"]
    if path := shutil.which("mkisofs"):
        return [path]
    raise FrrctlError("neither genisoimage nor xorriso found: apt-get install genisoimage")


def build_iso(spec: DriveSpec, out: Path) -> dict[str, Any]:
    out = Path(out)
    files = drive_files(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="frrctl-configdrive-") as tmp:
        root = Path(tmp) / "root"
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        fd, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
        try:
            cmd = [*_mkisofs(), "-o", partial, "-V", LABEL, "-J", "-R", "-quiet",
                   "-input-charset", "utf-8", str(root)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                first = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                raise FrrctlError(f"building {out} failed: {first}")
            os.chmod(partial, 0o644)
            os.replace(partial, out)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return {"iso": str(out), "label": LABEL, "files": sorted(files), "uuid": spec.instance_id}
