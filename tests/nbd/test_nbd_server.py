"""Server behaviour: concurrency, pipelining, export failures, flush/FUA, lifecycle."""

from __future__ import annotations

import os
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from sealbox.nbd.export import ExportUnavailable
from sealbox.nbd.memory import DictCatalog, FileExport, MemoryExport
from sealbox.nbd.server import NbdServer, ServerSettings
from tests.nbd.nbd_raw import (
    EIO,
    FLUSH,
    FUA,
    OPT_ABORT,
    OPT_EXPORT_NAME,
    OPT_STRUCTURED,
    READ,
    REP_ACK,
    TIMEOUT,
    TRIM,
    VOL_SIZE,
    WRITE,
    WRITE_ZEROES,
    RawClient,
    connect,
    wait_until,
)


class FailingExport(MemoryExport):
    """Fails reads and writes in its first 64 KiB, as a broken drive would."""

    def read(self, offset: int, length: int) -> bytes:
        if offset < 65536:
            raise OSError(5, "simulated media error")
        return super().read(offset, length)

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        if offset < 65536:
            raise ExportUnavailable("drive locked")
        super().write(offset, data, fua)


def test_flush_and_fua_are_counted_exactly(server: NbdServer, vol: MemoryExport) -> None:
    client = connect(server.port)
    assert client.write(0, b"a" * 512, flags=FUA) == 0
    assert client.write(512, b"b" * 512) == 0
    assert client.command(FLUSH) == 0
    assert client.command(WRITE_ZEROES, 0, 512, flags=FUA) == 0
    assert (vol.fua_writes, vol.flushes, vol.writes, vol.zero_writes) == (2, 1, 2, 1)
    assert client.command(TRIM, 4096, 4096, flags=FUA) == 0
    assert (vol.trims, vol.flushes) == (1, 2)  # a FUA trim is followed by a flush


def test_structured_read_is_one_data_chunk(server: NbdServer, vol: MemoryExport) -> None:
    client = connect(server.port, structured=True)
    client.request(READ, 1000, 3000, cookie=77)
    flags, rtype, cookie, payload = client.structured_chunk()
    assert (flags, rtype, cookie) == (1, 1, 77)  # DONE, OFFSET_DATA
    assert struct.unpack(">Q", payload[:8])[0] == 1000
    assert payload[8:] == vol.getvalue()[1000:4000]


def test_export_name_option_enters_transmission(server: NbdServer, vol: MemoryExport) -> None:
    client = RawClient(server.port)
    client.send(b"IHAVEOPT" + struct.pack(">II", OPT_EXPORT_NAME, 3) + b"vol")
    size, tflags = struct.unpack(">QH", client.recv(10))  # no 124 zeroes: we sent NO_ZEROES
    assert size == VOL_SIZE and tflags & 1
    assert client.read(0, 16) == (0, vol.getvalue()[:16])


def test_export_errors_become_eio_and_serving_goes_on(vol: MemoryExport) -> None:
    bad = FailingExport("bad", 1 << 20)
    srv = NbdServer(DictCatalog([bad, vol]), port=0)
    srv.start()
    try:
        client = connect(srv.port, "bad")
        assert client.read(0, 4096)[0] == EIO
        assert client.write(0, b"x" * 4096) == EIO
        assert client.read(65536, 4096) == (0, bytes(4096))
        sclient = connect(srv.port, "bad", structured=True)
        sclient.request(READ, 0, 10, cookie=3)
        _, rtype, cookie, payload = sclient.structured_chunk()
        assert (rtype, cookie, struct.unpack(">I", payload[:4])[0]) == (0x8001, 3, EIO)
        assert b"simulated" not in payload  # internal details stay in the log
        assert connect(srv.port, "vol").read(0, 8) == (0, vol.getvalue()[:8])
    finally:
        srv.stop()


def test_pipelined_requests_all_answered_by_cookie(server: NbdServer, vol: MemoryExport) -> None:
    client = connect(server.port)
    blocks = {cookie: os.urandom(65536) for cookie in range(64)}
    for cookie, data in blocks.items():  # all sent before any reply is read
        client.request(WRITE, cookie * 65536, len(data), cookie=cookie)
        client.send(data)
    replies = [client.simple_reply() for _ in blocks]
    assert sorted(replies) == [(0, cookie) for cookie in blocks]
    image = vol.getvalue()
    for cookie, data in blocks.items():
        assert image[cookie * 65536 : (cookie + 1) * 65536] == data


def test_many_clients_at_once(server: NbdServer, vol: MemoryExport) -> None:
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            client = connect(server.port)
            data = bytes([i]) * 8192
            for _ in range(20):
                assert client.write(i * 8192, data) == 0
                assert client.read(i * 8192, 8192) == (0, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert server.connection_count() == 16


def test_stop_closes_connections_promptly(catalog: DictCatalog) -> None:
    srv = NbdServer(catalog, port=0)
    srv.start()
    idle = [connect(srv.port) for _ in range(4)]
    haggling = RawClient(srv.port)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 5.0
    assert all(c.is_closed() for c in [*idle, haggling])
    with pytest.raises(OSError):
        RawClient(srv.port)


def test_connection_limit(catalog: DictCatalog) -> None:
    srv = NbdServer(catalog, port=0, settings=ServerSettings(max_connections=2))
    srv.start()
    try:
        first, second = connect(srv.port), connect(srv.port)
        wait_until(lambda: srv.connection_count() == 2)
        assert RawClient(srv.port, greet=False).is_closed()
        first.close()
        wait_until(lambda: srv.connection_count() == 1)
        assert connect(srv.port).read(0, 4)[0] == 0
        assert second.read(0, 4)[0] == 0
    finally:
        srv.stop()


def test_port_zero_reports_bound_port(catalog: DictCatalog) -> None:
    srv = NbdServer(catalog, port=0)
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.start()
    try:
        assert srv.port > 0
        assert connect(srv.port).size == VOL_SIZE
    finally:
        srv.stop()


def test_file_export_round_trip(tmp_path: Path) -> None:
    export = FileExport("f", tmp_path / "f.img", 1 << 20)
    try:
        export.write(1000, b"hello", fua=True)
        export.write_zeroes(1002, 2)
        export.trim(0, 10)
        export.flush()
        assert export.read(995, 12) == bytes(5) + b"he\0\0o" + bytes(2)
        assert (export.fua_writes, export.flushes) == (1, 1)
        with pytest.raises(ValueError):
            export.read((1 << 20) - 1, 2)
    finally:
        export.close()
    assert FileExport("f", tmp_path / "f.img").size == 1 << 20


class GatedExport(MemoryExport):
    """Reads at offset 0 wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__("gated", 1 << 20)
        self.gate = threading.Event()

    def read(self, offset: int, length: int) -> bytes:
        if offset == 0 and not self.gate.wait(TIMEOUT):
            raise TimeoutError("gate never opened")
        return super().read(offset, length)


def test_slow_request_does_not_hold_up_later_ones() -> None:
    gated = GatedExport()
    srv = NbdServer(DictCatalog([gated]), port=0)
    srv.start()
    try:
        client = connect(srv.port, "gated")
        client.request(READ, 0, 16, cookie=1)  # blocks in the export
        client.request(READ, 4096, 16, cookie=2)
        assert client.simple_reply() == (0, 2)  # answered first, out of order
        client.recv(16)
        gated.gate.set()
        assert client.simple_reply() == (0, 1)
    finally:
        gated.gate.set()
        srv.stop()


def test_structured_replies_also_apply_after_export_name(server: NbdServer) -> None:
    client = RawClient(server.port)
    client.option(OPT_STRUCTURED)
    client.send(b"IHAVEOPT" + struct.pack(">II", OPT_EXPORT_NAME, 3) + b"vol")
    client.recv(10)
    client.request(READ, 0, 8, cookie=4)
    assert client.structured_chunk()[:3] == (1, 1, 4)


def test_abort_is_acknowledged_then_closed(server: NbdServer) -> None:
    client = RawClient(server.port)
    assert client.option(OPT_ABORT) == [(REP_ACK, b"")]
    assert client.is_closed()


def test_file_export_served_to_qemu_img(tmp_path: Path) -> None:
    source = tmp_path / "src.img"
    source.write_bytes(os.urandom(1 << 20))
    export = FileExport("disk", tmp_path / "disk.img", 1 << 20)
    srv = NbdServer(DictCatalog([export]), port=0)
    srv.start()
    try:
        target = f"nbd://127.0.0.1:{srv.port}/disk"
        cmd = ["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(source), target]
        subprocess.run(cmd, check=True, timeout=TIMEOUT, capture_output=True)
    finally:
        srv.stop()
        export.close()
    assert (tmp_path / "disk.img").read_bytes() == source.read_bytes()
