"""Generate the northbound gRPC stubs from proto/frr-northbound.proto.

Used by the hatchling build hook (hatch_build.py, loaded by file path, so this
module imports nothing from frrctl) and by the first-import fallback of
frrctl.frr._proto for editable installs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PROTO_NAME = "frr-northbound.proto"
# The .proto is compiled as if it lived inside the package, so that protoc
# writes package-absolute imports (`from frrctl.frr._proto import ...`).
PACKAGE_PATH = ("frrctl", "frr", "_proto")
STUB_PATTERN = "frr_northbound_pb2*"


def generate(proto_file: Path, out_dir: Path) -> list[Path]:
    """Compile `proto_file` into `out_dir`; return the files written.

    Each file is written to a temporary name and renamed, so a concurrent
    importer sees either no stub or a complete one.
    """
    import grpc_tools  # build and dev dependency only
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="frrctl-protogen-") as tmp:
        src_root = Path(tmp, "src")
        out_root = Path(tmp, "out")
        src_pkg = src_root.joinpath(*PACKAGE_PATH)
        src_pkg.mkdir(parents=True)
        out_root.mkdir()
        shutil.copyfile(proto_file, src_pkg / PROTO_NAME)
        rel = "/".join((*PACKAGE_PATH, PROTO_NAME))
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{src_root}",
                f"-I{well_known}",
                f"--python_out={out_root}",
                f"--pyi_out={out_root}",
                f"--grpc_python_out={out_root}",
                rel,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed ({status}) on {proto_file}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for stub in sorted(out_root.joinpath(*PACKAGE_PATH).glob(STUB_PATTERN)):
            target = out_dir / stub.name
            fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{stub.name}.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(stub.read_bytes())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
            written.append(target)
    if not written:
        raise RuntimeError(f"protoc wrote no stubs for {proto_file}")
    return written
