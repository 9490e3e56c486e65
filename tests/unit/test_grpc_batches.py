"""EditCandidate messages stay under FRR 8.4.4's 4 MiB gRPC receive limit."""

from __future__ import annotations

import ipaddress

import grpc
import pytest

from frrctl.frr import _proto
from frrctl.frr.base import FrrUnavailable
from frrctl.frr.grpc import MAX_EDIT_BYTES, edit_batches, rpc_error
from frrctl.frr.staticd import StaticLayout


def path_values(n: int, start: int = 0) -> list:
    """The staticd driver's real path-values for n /32 routes (two per route)."""
    pb, _ = _proto.load()
    layout = StaticLayout(bridge="cloudbr0")
    out = []
    for i in range(start, start + n):
        prefix = ipaddress.ip_network(f"198.18.{i // 256 % 256}.{i % 256}/32")
        out.append(pb.PathValue(path=layout.nexthop_xpath(prefix), value=""))
        out.append(pb.PathValue(path=layout.tag_xpath(prefix), value="0"))
    return out


def test_ten_thousand_routes_are_split_below_the_receive_limit() -> None:
    pb, _ = _proto.load()
    updates = path_values(10_000)
    deletes = [pb.PathValue(path=p.path) for p in path_values(2_000, 20_000)[::2]]
    batches = list(edit_batches(updates, deletes, max_items=20_000))
    assert len(batches) > 1
    for upd, dels in batches:
        request = pb.EditCandidateRequest(candidate_id=1, update=upd, delete=dels)
        assert request.ByteSize() <= MAX_EDIT_BYTES < 4 << 20
    # nothing lost, nothing doubled, order kept
    assert [p for upd, _ in batches for p in upd] == updates
    assert [p for _, dels in batches for p in dels] == deletes


def test_the_item_limit_still_applies_and_one_edit_is_one_message() -> None:
    updates = path_values(10)
    assert [len(u) for u, _ in edit_batches(updates, [], max_items=8)] == [8, 8, 4]
    assert list(edit_batches(updates[:1], [], max_items=8)) == [(updates[:1], [])]
    assert list(edit_batches([], [], max_items=8)) == []


class _Error(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("details", "transient"),
    [
        ("Received message larger than max (5504543 vs. 4194304)", False),
        ("too many pending requests", True),
    ],
)
def test_a_message_too_large_is_not_retried(details: str, transient: bool) -> None:
    error = rpc_error("commit", _Error(grpc.StatusCode.RESOURCE_EXHAUSTED, details))
    assert isinstance(error, FrrUnavailable) is transient
    assert "RESOURCE_EXHAUSTED" in str(error)
