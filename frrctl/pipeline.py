"""Render -> check -> atomic write: the one way a host's files reach a directory.

Used by `frrctl render` and by the lab alike, so what the lab runs is exactly
what an operator deploys. Every frr.conf is checked by FRR's own parser
before anything is written; then each file goes through a temporary file and
a rename, so a reader (or a crash) never sees half a file, and a file whose
content is unchanged is not touched at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from frrctl.frrcheck import check_config
from frrctl.fsutil import write_atomic
from frrctl.inventory import Fleet
from frrctl.render import render_fleet

Rendered = dict[str, dict[str, str]]  # hostname -> {relative path: content}


@dataclass(frozen=True)
class Written:
    host: str
    path: Path
    changed: bool


def render_checked(fleet: Fleet, only: str | None = None, check: bool = True) -> Rendered:
    """Every host's files (or `only`'s); CheckError naming the host if FRR refuses one."""
    rendered = render_fleet(fleet, only)
    if check:
        for hostname, files in rendered.items():
            check_config(files["frr.conf"], f"{hostname}/frr.conf")
    return rendered


def write_rendered(rendered: Rendered, directories: Mapping[str, Path]) -> list[Written]:
    """Write each host's files below `directories[hostname]`; unchanged files stay untouched."""
    out = []
    for hostname, files in rendered.items():
        for rel, content in sorted(files.items()):
            path = directories[hostname] / rel
            changed = not (path.is_file() and path.read_text() == content)
            if changed:
                write_atomic(path, content)
            out.append(Written(hostname, path, changed))
    return out


def publish(
    fleet: Fleet, directory: Callable[[str], Path], only: str | None = None, check: bool = True
) -> list[Written]:
    """Render, check every host, and only then write any of them."""
    rendered = render_checked(fleet, only, check)
    return write_rendered(rendered, {host: directory(host) for host in rendered})
