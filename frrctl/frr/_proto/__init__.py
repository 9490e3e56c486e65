"""Generated northbound gRPC stubs (frr_northbound_pb2*.py, git-ignored).

A wheel ships them (hatch_build.py generates them at build time). An editable
install or a source checkout has none until the first import, which compiles
proto/frr-northbound.proto with grpcio-tools: into this directory when it is
writable, else into a per-user cache directory.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from frrctl.errors import FrrctlError

_HERE = Path(__file__).resolve().parent
_PB2 = "frr_northbound_pb2"
_PB2_GRPC = "frr_northbound_pb2_grpc"
_lock = threading.Lock()


def proto_source() -> Path:
    """The .proto: shipped in the wheel as frrctl/proto_src, else the checkout's proto/."""
    candidates = (
        _HERE.parent.parent / "proto_src" / "frr-northbound.proto",
        _HERE.parent.parent.parent / "proto" / "frr-northbound.proto",
    )
    for path in candidates:
        if path.is_file():
            return path
    raise FrrctlError(
        "northbound stubs missing and frr-northbound.proto not found in "
        + ", ".join(str(p) for p in candidates)
    )


def _generate(out_dir: Path) -> None:
    from frrctl.frr.protogen import generate

    try:
        generate(proto_source(), out_dir)
    except ImportError as exc:
        raise FrrctlError(
            "northbound stubs are missing and grpcio-tools is not installed to generate "
            f"them ({exc}); reinstall frrctl or `pip install grpcio-tools`"
        ) from exc


def _load_from(directory: Path) -> tuple[ModuleType, ModuleType]:
    # The grpc stub imports the pb2 module by its full package name, so both
    # are registered under that name whatever directory they live in.
    modules = []
    for short in (_PB2, _PB2_GRPC):
        name = f"{__name__}.{short}"
        if name in sys.modules:
            modules.append(sys.modules[name])
            continue
        spec = importlib.util.spec_from_file_location(name, directory / f"{short}.py")
        if spec is None or spec.loader is None:
            raise FrrctlError(f"cannot load generated stub {directory / short}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


def _stubs_present(directory: Path) -> bool:
    return (directory / f"{_PB2}.py").is_file() and (directory / f"{_PB2_GRPC}.py").is_file()


def load() -> tuple[ModuleType, ModuleType]:
    """Return (frr_northbound_pb2, frr_northbound_pb2_grpc), generating them if needed."""
    with _lock:
        if _stubs_present(_HERE):
            return (
                importlib.import_module(f"{__name__}.{_PB2}"),
                importlib.import_module(f"{__name__}.{_PB2_GRPC}"),
            )
        if os.access(_HERE, os.W_OK):
            _generate(_HERE)
            return _load_from(_HERE)
        # Read-only install without stubs: cache keyed by the .proto's content.
        digest = hashlib.sha256(proto_source().read_bytes()).hexdigest()[:16]
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        cache = base / "frrctl" / f"proto-{digest}"
        if not _stubs_present(cache):
            _generate(cache)
        return _load_from(cache)
