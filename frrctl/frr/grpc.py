"""gRPC driver: FRR's northbound gRPC (bgpd started with `-M grpc:PORT`).

Per batch: one candidate, one or more EditCandidate calls, one Commit(ALL),
then DeleteCandidate - so a batch lands in bgpd whole or not at all. What
the edit changes is the gate (frrctl.frr.gate). State is read back with Get.

The module listens on every address of bgpd's namespace without TLS: the
host must firewall the port to everything but itself (the lab shows it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from frrctl.frr import _proto
from frrctl.frr.base import (
    AnnounceDriver,
    DriverError,
    FrrUnavailable,
    RetryPolicy,
    TableCheck,
)
from frrctl.frr.gate import (
    Edit,
    Gate,
    GateError,
    GateState,
    build_edit,
    gate_state,
    nudge_edit,
    parse_route_maps,
)
from frrctl.frr.vty import VtyClient
from frrctl.frr.vtysh import bgp_tables, missing_in_rib, originated_in_rib
from frrctl.policy import Plan, prefix_key
from frrctl.pools import IPNetwork

log = logging.getLogger(__name__)

# Worth retrying: the daemon is down, restarting or busy.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
    # Reconnect fast after bgpd restarts (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def rpc_error(what: str, exc: grpc.RpcError, daemon: str = "bgpd") -> DriverError:
    """A clear DriverError (FrrUnavailable when worth retrying) for a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    message = f"{daemon} gRPC {what}: {name}: {details}"
    return FrrUnavailable(message) if code in _TRANSIENT else DriverError(message)


def _is_no_changes(exc: grpc.RpcError) -> bool:
    return exc.code() == grpc.StatusCode.ABORTED


def _is_missing_path(exc: grpc.RpcError) -> bool:
    return exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "not found" in str(exc.details())


def transaction(
    stub: Any,
    pb: Any,
    update: Iterable[tuple[str, str]],
    delete: Iterable[str],
    comment: str,
    edit_chunk: int,
    rpc_timeout: float,
    commit_timeout: float,
    daemon: str = "bgpd",
) -> int | None:
    """One northbound transaction: candidate, edits in chunks, Commit(ALL), and the
    candidate deleted whatever happened. FRR's transaction id, None for "no changes"."""
    try:
        candidate = stub.CreateCandidate(
            pb.CreateCandidateRequest(), timeout=rpc_timeout
        ).candidate_id
    except grpc.RpcError as exc:
        raise rpc_error("CreateCandidate", exc, daemon) from exc
    try:
        updates = [pb.PathValue(path=p, value=v) for p, v in update]
        deletes = [pb.PathValue(path=p) for p in delete]
        step = edit_chunk
        for i in range(0, max(len(updates), len(deletes)), step):
            stub.EditCandidate(
                pb.EditCandidateRequest(
                    candidate_id=candidate,
                    update=updates[i : i + step],
                    delete=deletes[i : i + step],
                ),
                timeout=rpc_timeout,
            )
        try:
            reply = stub.Commit(
                pb.CommitRequest(
                    candidate_id=candidate, phase=pb.CommitRequest.ALL, comment=comment
                ),
                timeout=commit_timeout,
            )
        except grpc.RpcError as exc:
            if _is_no_changes(exc):
                return None  # running already equals the candidate
            raise
        return int(reply.transaction_id)
    except grpc.RpcError as exc:
        raise rpc_error("commit", exc, daemon) from exc
    finally:
        try:
            stub.DeleteCandidate(
                pb.DeleteCandidateRequest(candidate_id=candidate), timeout=rpc_timeout
            )
        except grpc.RpcError as exc:  # the daemon restarted: the candidate died with it
            log.debug("DeleteCandidate %s: %s", candidate, exc)


@dataclass
class GrpcDriver(AnnounceDriver):
    """Announce through the gate's prefix-lists, over bgpd's northbound gRPC at `target`.

    `target` is a gRPC target: `127.0.0.1:50051`, or `unix:/path` from a
    NetnsPortForwarder when bgpd lives in another namespace. `vty_dir` (bgpd's
    vty socket) serves only `invalid()`: FRR 8.4's northbound has no BGP table
    to read.
    """

    target: str
    gate: Gate = field(default_factory=Gate)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rpc_timeout: float = 30.0
    commit_timeout: float = 900.0  # FRR validates big commits slowly (see gate.py)
    edit_chunk: int = 20_000  # path-values per EditCandidate message
    name: str = "grpc"
    vty_dir: Path | None = None

    def __post_init__(self) -> None:
        self._pb, self._pb_grpc = _proto.load()
        self._bgpd = VtyClient(self.vty_dir / "bgpd.vty") if self.vty_dir else None
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._snapshot: GateState | None = None

    # -- transport -----------------------------------------------------------
    def _northbound(self) -> Any:
        if self._stub is None:
            self._channel = grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
            self._stub = self._pb_grpc.NorthboundStub(self._channel)
        return self._stub

    def close(self) -> None:
        if self._bgpd is not None:
            self._bgpd.close()
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None
        self._snapshot = None

    def capabilities(self) -> dict[str, Any]:
        def call() -> Any:
            try:
                return self._northbound().GetCapabilities(
                    self._pb.GetCapabilitiesRequest(), timeout=self.rpc_timeout
                )
            except grpc.RpcError as exc:
                raise rpc_error("GetCapabilities", exc) from exc

        reply = self.retry.call("grpc capabilities", call)
        return {
            "frr_version": reply.frr_version,
            "modules": sorted(m.name for m in reply.supported_modules),
        }

    def get(self, path: str) -> dict[str, Any]:
        """Configuration under `path` as parsed JSON; {} when FRR has none."""
        request = self._pb.GetRequest(
            type=self._pb.GetRequest.CONFIG, encoding=self._pb.JSON, path=[path]
        )
        merged: dict[str, Any] = {}
        try:
            for reply in self._northbound().Get(request, timeout=self.rpc_timeout):
                if reply.data.data.strip():
                    merged.update(json.loads(reply.data.data))
        except grpc.RpcError as exc:
            if _is_missing_path(exc):
                return {}
            raise rpc_error(f"Get {path}", exc) from exc
        return merged

    # -- driver interface ----------------------------------------------------
    def read_state(self) -> GateState:
        def call() -> GateState:
            data: dict[str, Any] = {}
            for path in ("/frr-filter:lib", "/frr-route-map:lib"):
                data.update(self.get(path))
            try:
                return gate_state(self.gate, data)
            except GateError as exc:
                raise DriverError(f"bgpd gRPC: {exc}") from exc

        return self.retry.call("grpc read", call)

    def read(self) -> dict[IPNetwork, bool]:
        # The snapshot serves the next apply() (sequence numbers to delete and
        # reuse); it is FRR's answer, not the driver's memory, and used once.
        self._snapshot = self.read_state()
        return self._snapshot.announced()

    def apply(self, plan: Plan) -> None:
        state = self._snapshot if self._snapshot is not None else self.read_state()
        self._snapshot = None
        try:
            edit = build_edit(self.gate, state, plan)
        except GateError as exc:
            raise DriverError(f"bgpd gRPC: {exc}") from exc
        if edit:
            self.retry.call("grpc commit", lambda: self.commit(edit, f"frrctl {plan.summary()}"))

    def config_loaded(self) -> bool:
        """True once bgpd's running config holds the gate's route-maps.

        After a restart bgpd gets its config from `vtysh -b`, which commits
        all of it at the end of the load from a candidate taken at its start:
        a gRPC commit landing in between is undone by that final commit. The
        rendered gate appearing in the running config marks the end.
        """
        try:
            data = self.get("/frr-route-map:lib")
        except DriverError:
            return False
        ok, _ = parse_route_maps(data, self.gate)
        return len(ok) == 2 * self.gate.shards and all(ok.values())

    def check_table(self) -> TableCheck:
        """bgpd's table against the gate, from one read of each.

        Missing: the gate lets a prefix through but bgpd lacks it (see
        nudge_edit). Stale: bgpd still announces a kernel route the gate no
        longer lets through. FRR 8.4's zebra never tells bgpd about a kernel
        route removed while bgpd was not registered with it (a zebra restart),
        and gRPC cannot make bgpd drop it: only a bgpd restart clears it.
        """
        if self._bgpd is None:
            return TableCheck([])
        gate = self.read_state().announced()
        tables = bgp_tables(self._bgpd, self.retry)
        stale = originated_in_rib(tables) - set(gate)
        return TableCheck(missing_in_rib(tables, gate), sorted(stale, key=prefix_key))

    def refresh(self, prefixes: list[IPNetwork]) -> None:
        """Make bgpd fetch the kernel routes from zebra again (one small commit)."""
        edit = nudge_edit(self.gate, self.read_state(), prefixes)
        if edit:
            self.retry.call("grpc commit", lambda: self.commit(edit, "frrctl redistribute again"))

    def commit(self, edit: Edit, comment: str = "frrctl") -> int | None:
        """One transaction; returns FRR's transaction id, None for "no changes"."""
        return transaction(
            self._northbound(), self._pb, edit.update, edit.delete, comment,
            self.edit_chunk, self.rpc_timeout, self.commit_timeout,
        )  # fmt: skip
