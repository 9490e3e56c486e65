"""A lab's state: the state file written before anything is created, and the `Lab`
it describes (plan, where its files live). Read by every lab module; imports none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from frrctl.inventory import load_inventory
from frrctl.lab import netns
from frrctl.lab.netns import LabError
from frrctl.lab.topology import LabPlan, plan_lab

DEFAULT_STATE_DIR = Path(os.environ.get("FRRCTL_LAB_DIR", "/run/frrctl-lab"))
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Lab:
    """A running (or half-built) lab: its plan and where its files live."""

    plan: LabPlan
    state_dir: Path
    inventory: Path
    frr_sbin: Path = netns.FRR_SBIN  # FRR daemons: Debian's, or the gRPC-enabled build

    @property
    def workdir(self) -> Path:
        return self.state_dir / self.plan.prefix

    def nsdir(self, role: str) -> Path:
        return self.workdir / role

    def vty(self, role: str) -> Path:
        return self.nsdir(role) / "vty"

    def host_state(self, hostname: str) -> Path:
        """The host's frrctl state (instance record), one per hypervisor namespace."""
        return self.nsdir(hostname) / "frrctl-state"

    @property
    def record(self) -> Path:
        return self.nsdir("xbgp") / "updates.jsonl"


def load_state(state_dir: Path) -> dict[str, object] | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"namespaces": [], "prefix": None}
    return data if isinstance(data, dict) else None


def attach(state_dir: Path) -> Lab:
    """The lab described by the state file (LabError when no lab is up)."""
    state = load_state(state_dir)
    if not state or not state.get("prefix"):
        raise LabError(f"no lab is up (no {state_dir / STATE_FILE}); run `frrctl lab up`")
    inventory = Path(str(state["inventory"]))
    fleet = load_inventory(inventory)
    moves = state.get("moves") or {}
    assert isinstance(moves, dict)
    sbin = Path(str(state.get("frr_sbin") or netns.FRR_SBIN))
    return Lab(plan_lab(fleet, str(state["prefix"]), moves), state_dir, inventory, sbin)


def record_move(state_dir: Path, vm: str, host: str) -> None:
    path = state_dir / STATE_FILE
    state = json.loads(path.read_text())
    state.setdefault("moves", {})[vm] = host
    path.write_text(json.dumps(state, indent=2))
