"""Shared test helpers: what needs root and FRR skips cleanly elsewhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lab_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not Path("/usr/lib/frr/zebra").exists() or shutil.which("vtysh") is None:
        return "needs Debian's frr package"
    return None


needs_lab = pytest.mark.skipif(lab_skip_reason() is not None, reason=lab_skip_reason() or "")
