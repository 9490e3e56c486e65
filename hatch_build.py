"""Hatchling build hook: compile proto/frr-northbound.proto into frrctl/frr/_proto/.

The stubs are git-ignored build products; `artifacts` puts them into the
wheel (and the editable install) despite the ignore.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ProtoStubsHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # the sdist ships the .proto; building its wheel compiles it
        root = Path(self.root)
        # Loaded by path: importing the frrctl package would need its runtime deps.
        spec = importlib.util.spec_from_file_location(
            "_frrctl_protogen", root / "frrctl" / "frr" / "protogen.py"
        )
        assert spec is not None and spec.loader is not None
        protogen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(protogen)
        out_dir = root.joinpath(*protogen.PACKAGE_PATH)
        protogen.generate(root / "proto" / protogen.PROTO_NAME, out_dir)
        build_data["artifacts"].append("/frrctl/frr/_proto/frr_northbound_pb2*")
