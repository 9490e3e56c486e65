"""FRR's own parser as the judge of a rendered config: `vtysh -C -f FILE`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from frrctl.errors import CheckError


def vtysh_path() -> str | None:
    return shutil.which("vtysh")


def check_config(text: str, label: str, vtysh: str | None = None) -> None:
    """Raise CheckError with FRR's complaint when vtysh rejects `text`."""
    vtysh = vtysh or vtysh_path()
    if vtysh is None:
        raise CheckError("vtysh not found: install frr, or render with --no-check")
    with tempfile.TemporaryDirectory(prefix="frrctl-check-") as tmp:
        path = Path(tmp) / "frr.conf"
        path.write_text(text)
        result = subprocess.run(
            [vtysh, "-C", "-f", str(path)], capture_output=True, text=True, timeout=60
        )
    if result.returncode != 0:
        # One line, as every frrctl error: vtysh names the bad line and its reason.
        lines = (result.stdout + result.stderr).replace(str(path), label).split("\n")
        detail = "; ".join(line.strip() for line in lines if line.strip())
        raise CheckError(f"{label}: rejected by vtysh -C: {detail}")
