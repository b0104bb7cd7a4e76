"""One pool of workers runs the requests of every connection: bounded, shared and fair."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from sealbox.nbd.memory import DictCatalog, MemoryExport
from sealbox.nbd.server import NbdServer, ServerSettings
from sealbox.nbd.workers import WorkerPool, default_size
from tests.nbd.nbd_raw import READ, TIMEOUT, RawClient, close_all, connect, wait_until

KIB = 1024
MakeServer = Callable[[int], NbdServer]
SIZE = 4 * 1024 * KIB


class HeldExport(MemoryExport):
    """Holds every read until ``release`` is set; counts the calls inside at once and records
    the order in which reads entered (by offset)."""

    def __init__(self) -> None:
        super().__init__("vol", SIZE, os.urandom(SIZE))
        self.release = threading.Event()
        self.order: list[int] = []
        self.active = 0
        self.most = 0
        self._mutex = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        with self._mutex:
            self.order.append(offset)
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            assert self.release.wait(TIMEOUT)
            return super().read(offset, length)
        finally:
            with self._mutex:
                self.active -= 1


@pytest.fixture
def export() -> HeldExport:
    return HeldExport()


@pytest.fixture
def server_of(export: HeldExport) -> Iterator[MakeServer]:
    servers: list[NbdServer] = []

    def make(workers: int) -> NbdServer:
        srv = NbdServer(DictCatalog([export]), port=0, settings=ServerSettings(workers=workers))
        srv.start()
        servers.append(srv)
        return srv

    yield make
    export.release.set()
    close_all()
    for srv in servers:
        srv.stop()


def _reads(client: RawClient, offsets: list[int]) -> None:
    """Reads of 4 KiB with gaps between them, so that none merges with another."""
    for offset in offsets:
        client.request(READ, offset, 4 * KIB, cookie=offset)


def _answers(client: RawClient, export: HeldExport, count: int) -> dict[int, bytes]:
    out = {}
    for _ in range(count):
        error, cookie = client.simple_reply()
        assert error == 0
        out[cookie] = client.recv(4 * KIB)
    image = export.getvalue()
    assert all(data == image[off:off + 4 * KIB] for off, data in out.items())
    return out


def test_one_connection_gets_every_worker(server_of: MakeServer, export: HeldExport) -> None:
    srv = server_of(3)
    client = connect(srv.port)
    _reads(client, [0, 64 * KIB, 128 * KIB])
    wait_until(lambda: export.active == 3)  # all three inside the export at once
    export.release.set()
    assert sorted(_answers(client, export, 3)) == [0, 64 * KIB, 128 * KIB]


def test_calls_in_flight_never_exceed_the_pool(server_of: MakeServer, export: HeldExport) -> None:
    srv = server_of(2)
    one, two = connect(srv.port), connect(srv.port)
    _reads(one, [0, 64 * KIB])
    _reads(two, [128 * KIB, 192 * KIB])
    wait_until(lambda: export.active == 2 and srv.queued_requests() == 2)
    export.release.set()
    assert len(_answers(one, export, 2)) == 2 and len(_answers(two, export, 2)) == 2
    assert export.most == 2


def test_a_busy_connection_does_not_keep_another_waiting(server_of: MakeServer,
                                                         export: HeldExport) -> None:
    srv = server_of(1)
    busy, other = connect(srv.port), connect(srv.port)
    _reads(busy, [0])
    wait_until(lambda: export.active == 1)  # the only worker is held
    _reads(busy, [64 * KIB * i for i in range(1, 6)])
    wait_until(lambda: srv.queued_requests() == 5)
    _reads(other, [1024 * KIB])
    wait_until(lambda: srv.queued_requests() == 6)
    export.release.set()
    assert len(_answers(busy, export, 6)) == 6 and len(_answers(other, export, 1)) == 1
    # connections with work take turns: the other's read is the third call, not the seventh
    assert export.order.index(1024 * KIB) == 2


def test_the_pool_finishes_work_it_was_given_before_it_stops() -> None:
    done: list[int] = []

    class Source:
        def __init__(self, n: int) -> None:
            self.n = n

        def run_one(self) -> None:
            done.append(self.n)

    pool = WorkerPool(1)
    sources = [Source(n) for n in range(5)]
    for source in sources:
        pool.wake(source)  # queued before any worker exists
    pool.start()
    pool.stop(TIMEOUT)
    assert sorted(done) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="at least one"):
        WorkerPool(0)
    assert default_size() >= 4


def test_a_client_that_never_reads_its_replies_holds_no_worker() -> None:
    image = os.urandom(SIZE)
    srv = NbdServer(DictCatalog([MemoryExport("vol", SIZE, image)]), port=0,
                    settings=ServerSettings(workers=2))
    srv.start()
    try:
        stuck = connect(srv.port)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for i in range(200):  # 64 KiB reads with gaps: no merging, ~12 MiB of replies unread
            stuck.request(READ, (i * 128 * KIB) % (SIZE - 64 * KIB), 64 * KIB, cookie=i)
        # every request ran; the replies wait on the connection's own sender, not on workers
        wait_until(lambda: srv.queued_requests() == 0)
        other = connect(srv.port)
        assert other.read(4096, 4096, cookie=7) == (0, image[4096:8192])
    finally:
        close_all()
        srv.stop()
