"""Adjacent queued requests run as one export call, and each is still answered on its own."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from sealbox.nbd import protocol as p
from sealbox.nbd.batching import PendingQueue, Request
from sealbox.nbd.memory import DictCatalog, MemoryExport
from sealbox.nbd.server import NbdServer, ServerSettings
from tests.nbd.nbd_raw import EIO, FUA, READ, TIMEOUT, WRITE, RawClient, connect, wait_until

KIB = 1024
MERGE = 64 * KIB


def req(cmd: int, offset: int, length: int, flags: int = 0) -> Request:
    return Request(cmd, flags, cookie=offset, offset=offset, length=length)


# --- the queue alone ----------------------------------------------------------------------------
def test_adjacent_reads_merge_in_order() -> None:
    q = PendingQueue(MERGE)
    for offset in (0, 16 * KIB, 32 * KIB):
        q.put(req(p.CMD_READ, offset, 16 * KIB), cost=16 * KIB)
    assert len(q) == 3
    batch = q.take()
    assert batch is not None and len(q) == 0
    assert [r.offset for r in batch.requests] == [0, 16 * KIB, 32 * KIB]
    assert (batch.offset, batch.length, batch.cost) == (0, 48 * KIB, 48 * KIB)


@pytest.mark.parametrize("second", [
    req(p.CMD_WRITE, 16 * KIB, 16 * KIB),  # another command
    req(p.CMD_READ, 20 * KIB, 16 * KIB),  # a gap
    req(p.CMD_READ, 8 * KIB, 8 * KIB),  # an overlap, backwards
    req(p.CMD_READ, 16 * KIB, 16 * KIB, flags=p.CMD_FLAG_DF),  # other flags
    req(p.CMD_READ, 16 * KIB, 0),  # empty
    req(p.CMD_FLUSH, 16 * KIB, 0),  # never merged
    req(p.CMD_READ, 48 * KIB, 32 * KIB),  # would cross a multiple of the merge size
])
def test_only_adjacent_same_kind_requests_inside_one_window_merge(second: Request) -> None:
    q = PendingQueue(MERGE)
    first = req(p.CMD_READ, 32 * KIB if second.offset == 48 * KIB else 0, 16 * KIB)
    q.put(first, cost=1)
    q.put(second, cost=1)
    one, two = q.take(), q.take()
    assert one is not None and two is not None
    assert (one.requests, two.requests) == ([first], [second])


def test_a_batch_a_worker_took_is_never_extended() -> None:
    q = PendingQueue(MERGE)
    q.put(req(p.CMD_WRITE, 0, 4 * KIB), cost=1)
    taken = q.take()
    q.put(req(p.CMD_WRITE, 4 * KIB, 4 * KIB), cost=1)
    assert taken is not None and len(taken.requests) == 1
    later = q.take()
    assert later is not None and [r.offset for r in later.requests] == [4 * KIB]


def test_take_from_an_empty_queue_is_none() -> None:
    q = PendingQueue(MERGE)
    assert q.take() is None
    q.put(req(p.CMD_READ, 0, 4 * KIB), cost=1)
    assert len(q) == 1
    assert q.take() is not None
    assert q.take() is None
    assert len(q) == 0


# --- through a server -----------------------------------------------------------------------------
class GatedExport(MemoryExport):
    """Holds its first call until ``gate`` is set (so that later requests queue up behind
    it), records every call, and fails calls that touch ``bad`` like a bad sector would."""

    def __init__(self, name: str, size: int, data: bytes) -> None:
        super().__init__(name, size, data)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[str, int, int]] = []
        self.bad: range | None = None

    def _enter(self, op: str, offset: int, length: int) -> None:
        self.calls.append((op, offset, length))
        self.entered.set()
        assert self.gate.wait(TIMEOUT)
        if self.bad is not None and offset < self.bad.stop and self.bad.start < offset + length:
            raise OSError(5, "simulated media error")

    def read(self, offset: int, length: int) -> bytes:
        self._enter("read", offset, length)
        return super().read(offset, length)

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        self._enter("write", offset, len(data))
        super().write(offset, data, fua)


@pytest.fixture
def gated() -> GatedExport:
    return GatedExport("vol", 1 << 20, os.urandom(1 << 20))


@pytest.fixture
def one_worker(gated: GatedExport) -> Iterator[NbdServer]:
    settings = ServerSettings(workers=1, merge_bytes=MERGE)
    srv = NbdServer(DictCatalog([gated]), port=0, settings=settings)
    srv.start()
    yield srv
    srv.stop()


def _queue_behind_a_held_call(client: RawClient, gated: GatedExport) -> None:
    """Send one read the single worker takes and holds; what is sent next queues up."""
    client.request(READ, 512 * KIB, 4 * KIB, cookie=999)
    assert gated.entered.wait(TIMEOUT)


def _replies(client: RawClient, count: int,
             lengths: dict[int, int]) -> dict[int, tuple[int, bytes]]:
    """``count`` simple replies by cookie; a successful read's data follows its header."""
    out = {}
    for _ in range(count):
        error, cookie = client.simple_reply()
        data = client.recv(lengths[cookie]) if error == 0 and lengths.get(cookie) else b""
        out[cookie] = (error, data)
    return out


def test_queued_adjacent_writes_become_one_call(one_worker: NbdServer,
                                                gated: GatedExport) -> None:
    client = connect(one_worker.port)
    _queue_behind_a_held_call(client, gated)
    payloads = {cookie: os.urandom(16 * KIB) for cookie in (1, 2, 3, 4)}
    for cookie, data in payloads.items():
        client.request(WRITE, (cookie - 1) * 16 * KIB, len(data), cookie=cookie)
        client.send(data)
    # the fifth (FUA) may not join: other flags, and the merge window ends at 64 KiB anyway
    client.request(WRITE, 64 * KIB, 4 * KIB, cookie=5, flags=FUA)
    client.send(b"f" * 4 * KIB)
    wait_until(lambda: one_worker.queued_requests() == 5)
    gated.gate.set()
    replies = _replies(client, 6, {999: 4 * KIB})
    assert {c: e for c, (e, _) in replies.items()} == dict.fromkeys((999, 1, 2, 3, 4, 5), 0)
    assert gated.calls[1:] == [("write", 0, 64 * KIB), ("write", 64 * KIB, 4 * KIB)]
    assert gated.getvalue()[:64 * KIB] == b"".join(payloads.values())
    assert gated.fua_writes == 1


def _four_adjacent_reads(server: NbdServer, gated: GatedExport) -> dict[int, tuple[int, bytes]]:
    """Reads of 16 KiB at 0, 16, 32 and 48 KiB (cookies 1-4), queued behind a held call, then
    let go; their replies by cookie."""
    client = connect(server.port)
    _queue_behind_a_held_call(client, gated)
    for cookie in range(1, 5):
        client.request(READ, (cookie - 1) * 16 * KIB, 16 * KIB, cookie=cookie)
    wait_until(lambda: server.queued_requests() == 4)
    gated.gate.set()
    return _replies(client, 5, dict.fromkeys(range(1, 5), 16 * KIB) | {999: 4 * KIB})


def test_each_request_of_a_merged_read_gets_its_own_data(one_worker: NbdServer,
                                                         gated: GatedExport) -> None:
    replies = _four_adjacent_reads(one_worker, gated)
    image = gated.getvalue()
    for cookie in range(1, 5):
        start = (cookie - 1) * 16 * KIB
        assert replies[cookie] == (0, image[start:start + 16 * KIB])
    assert ("read", 0, 64 * KIB) in gated.calls


def test_an_error_in_a_merged_read_reaches_only_the_requests_it_concerns(
        one_worker: NbdServer, gated: GatedExport) -> None:
    gated.bad = range(20 * KIB, 21 * KIB)  # inside the second request only
    replies = _four_adjacent_reads(one_worker, gated)
    image = gated.getvalue()
    assert replies[2] == (EIO, b"")
    for cookie in (1, 3, 4):
        start = (cookie - 1) * 16 * KIB
        assert replies[cookie] == (0, image[start:start + 16 * KIB])
    # the merged call failed, then each request ran alone
    assert gated.calls[1:] == [("read", 0, 64 * KIB)] + [
        ("read", c * 16 * KIB, 16 * KIB) for c in range(4)]


def test_merged_structured_reads_are_one_data_chunk_each(one_worker: NbdServer,
                                                         gated: GatedExport) -> None:
    client = connect(one_worker.port, structured=True)
    _queue_behind_a_held_call(client, gated)
    for cookie in range(1, 5):
        client.request(READ, (cookie - 1) * 8 * KIB, 8 * KIB, cookie=cookie)
    wait_until(lambda: one_worker.queued_requests() == 4)
    gated.gate.set()
    chunks = {}
    for _ in range(5):
        flags, rtype, cookie, payload = client.structured_chunk()
        assert (flags, rtype) == (1, 1)  # DONE, OFFSET_DATA: one chunk answers a request
        chunks[cookie] = payload
    image = gated.getvalue()
    for cookie in range(1, 5):
        start = (cookie - 1) * 8 * KIB
        assert chunks[cookie] == start.to_bytes(8, "big") + image[start:start + 8 * KIB]
    assert ("read", 0, 32 * KIB) in gated.calls


def test_thousands_of_merged_small_reads_are_all_answered(one_worker: NbdServer,
                                                          gated: GatedExport) -> None:
    # 2048 reads of 32 bytes make one 64 KiB call; their 4096 reply parts are more than one
    # sendmsg may carry (IOV_MAX), so they must go out in several.
    client = connect(one_worker.port)
    _queue_behind_a_held_call(client, gated)
    count = 2048
    for i in range(count):
        client.request(READ, i * 32, 32, cookie=10_000 + i)
    wait_until(lambda: one_worker.queued_requests() == count, timeout=30)
    gated.gate.set()
    cookies = range(10_000, 10_000 + count)
    replies = _replies(client, count + 1, dict.fromkeys(cookies, 32) | {999: 4 * KIB})
    image = gated.getvalue()
    assert all(replies[10_000 + i] == (0, image[i * 32:(i + 1) * 32]) for i in range(count))
    assert gated.calls[1:] == [("read", 0, count * 32)]
