"""FRR's northbound gRPC transport (a daemon started with `-M grpc:PORT`).

One transaction per batch: a candidate, one or more EditCandidate calls, one
Commit(ALL), then DeleteCandidate - so a batch lands whole or not at all. The
gRPC driver (frrctl.frr.staticd) edits staticd's routes through it.

The module listens on every address of the daemon's namespace without TLS:
the host must firewall the port to everything but itself (the lab shows it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from frrctl.frr.base import DriverError, FrrUnavailable

log = logging.getLogger(__name__)

# Worth retrying: the daemon is down, restarting or busy.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
    # Reconnect fast after the daemon restarts (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


# FRR 8.4.4 builds its gRPC server without raising the receive limit
# (lib/northbound_grpc.cpp, frr_grpc_init: no SetMaxReceiveMessageSize), so
# gRPC's default of 4 MiB applies to every EditCandidate. Stay well below it.
MAX_EDIT_BYTES = 3 << 20
# Protobuf's per-element framing in a repeated field: one tag byte and a
# length varint of at most 5 bytes.
_FRAMING = 6


def rpc_error(what: str, exc: grpc.RpcError, daemon: str = "staticd") -> DriverError:
    """A clear DriverError (FrrUnavailable when worth retrying) for a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    message = f"{daemon} gRPC {what}: {name}: {details}"
    # RESOURCE_EXHAUSTED also means "message too large": resending the same
    # message would fail forever, so that one is not worth retrying.
    transient = code in _TRANSIENT and "larger than max" not in (details or "")
    return FrrUnavailable(message) if transient else DriverError(message)


class _Sized(Protocol):
    def ByteSize(self) -> int: ...  # protobuf's name


T = TypeVar("T", bound=_Sized)


def edit_batches(
    updates: Sequence[T], deletes: Sequence[T], max_items: int, max_bytes: int = MAX_EDIT_BYTES
) -> Iterator[tuple[list[T], list[T]]]:
    """Split one transaction's edits into EditCandidate messages of at most
    max_items path-values and max_bytes encoded (pure: protobuf sizes only).
    Deletes go first, so a message never mixes them out of order."""
    batch: tuple[list[T], list[T]] = ([], [])
    size = 0
    for kind, items in ((1, deletes), (0, updates)):
        for item in items:
            cost = item.ByteSize() + _FRAMING
            count = len(batch[0]) + len(batch[1])
            if count and (count >= max_items or size + cost > max_bytes):
                yield batch
                batch, size = ([], []), 0
            batch[kind].append(item)
            size += cost
    if batch[0] or batch[1]:
        yield batch


def _is_no_changes(exc: grpc.RpcError) -> bool:
    return exc.code() == grpc.StatusCode.ABORTED


def transaction(
    stub: Any,
    pb: Any,
    update: Iterable[tuple[str, str]],
    delete: Iterable[str],
    comment: str,
    edit_chunk: int,
    rpc_timeout: float,
    commit_timeout: float,
    daemon: str = "staticd",
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
        for upd, dels in edit_batches(updates, deletes, edit_chunk):
            stub.EditCandidate(
                pb.EditCandidateRequest(candidate_id=candidate, update=upd, delete=dels),
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
