"""Malformed and hostile traffic: the server answers or hangs up, never writes wrongly, and
keeps serving everyone else."""

from __future__ import annotations

import struct

import pytest

from sealbox.nbd.memory import MemoryExport
from sealbox.nbd.server import NbdServer, ServerSettings
from tests.nbd.nbd_raw import (
    DISC,
    EINVAL,
    ENOSPC,
    ERR_INVALID,
    ERR_TOO_BIG,
    ERR_UNKNOWN,
    ERR_UNSUP,
    FLUSH,
    IHAVEOPT,
    OPT_GO,
    OPT_INFO,
    OPT_LIST,
    OPT_STRUCTURED,
    READ,
    REP_ACK,
    REP_SERVER,
    REQUEST_MAGIC,
    VOL_SIZE,
    WRITE,
    RawClient,
    connect,
    wait_until,
)

MAX_PAYLOAD = 32 * 1024 * 1024


def still_serves(server: NbdServer, vol: MemoryExport) -> None:
    """A fresh client can read the export, and it holds what it held."""
    client = connect(server.port)
    error, data = client.read(0, 4096)
    assert (error, data) == (0, vol.getvalue()[:4096])
    client.close()


# --- handshake --------------------------------------------------------------------------------
def test_client_without_fixed_newstyle_is_refused(server: NbdServer, vol: MemoryExport) -> None:
    client = RawClient(server.port, client_flags=0)
    assert client.is_closed()
    still_serves(server, vol)


def test_unknown_client_flags_are_refused(server: NbdServer) -> None:
    assert RawClient(server.port, client_flags=1 | 0x80).is_closed()


def test_bad_option_magic_closes(server: NbdServer, vol: MemoryExport) -> None:
    client = RawClient(server.port)
    client.send(b"IHAVEOPX" + struct.pack(">II", OPT_LIST, 0))
    assert client.is_closed()
    still_serves(server, vol)


def test_garbage_haggling_gets_error_replies_then_go_works(server: NbdServer) -> None:
    client = RawClient(server.port)
    assert client.option(99)[-1][0] == ERR_UNSUP
    assert client.option(OPT_LIST, b"junk")[-1][0] == ERR_INVALID
    assert client.option(OPT_STRUCTURED, b"x")[-1][0] == ERR_INVALID
    assert client.option(OPT_INFO, b"\xff\xff\xff\xff")[-1][0] == ERR_INVALID
    assert client.option(OPT_INFO, struct.pack(">I", 3) + b"vol")[-1][0] == ERR_INVALID
    assert client.option(OPT_GO, struct.pack(">I", 4) + b"nope\0\0")[-1][0] == ERR_UNKNOWN
    too_big = client.option(77, bytes(100_000))
    assert too_big[-1][0] == ERR_TOO_BIG
    listing = client.option(OPT_LIST)
    assert [r for r, _ in listing] == [REP_SERVER, REP_SERVER, REP_SERVER, REP_ACK]
    client.go("vol")
    assert client.size == VOL_SIZE
    assert client.read(0, 10)[0] == 0


def test_random_garbage_closes_and_others_unaffected(server: NbdServer, vol: MemoryExport) -> None:
    client = RawClient(server.port, greet=False)
    client.send(bytes(range(256)) * 64)
    assert client.is_closed()
    still_serves(server, vol)


def test_silent_client_is_dropped_after_handshake_timeout(vol: MemoryExport) -> None:
    from sealbox.nbd.memory import DictCatalog

    srv = NbdServer(DictCatalog([vol]), port=0, settings=ServerSettings(handshake_timeout=0.3))
    srv.start()
    try:
        client = RawClient(srv.port)  # greets, then says nothing
        assert client.is_closed()
    finally:
        srv.stop()


# --- transmission -----------------------------------------------------------------------------
def test_bad_request_magic_closes(server: NbdServer, vol: MemoryExport) -> None:
    before = vol.getvalue()
    client = connect(server.port)
    client.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, WRITE, 1, 0, 16) + b"x" * 16)
    assert client.is_closed()
    assert vol.getvalue() == before
    still_serves(server, vol)


@pytest.mark.parametrize("structured", [False, True])
def test_read_above_max_length_is_einval(server: NbdServer, structured: bool) -> None:
    client = connect(server.port, structured=structured)
    client.request(READ, 0, MAX_PAYLOAD + 1, cookie=5)
    if structured:
        flags, rtype, cookie, payload = client.structured_chunk()
        assert (flags & 1, rtype, cookie) == (1, 0x8001, 5)
        assert struct.unpack(">I", payload[:4])[0] == EINVAL
    else:
        assert client.simple_reply() == (EINVAL, 5)
    assert client.command(FLUSH) == 0  # the connection is still in step


def test_write_above_max_length_is_discarded(server: NbdServer, vol: MemoryExport) -> None:
    before = vol.getvalue()
    client = connect(server.port)
    assert client.write(0, b"\xee" * (MAX_PAYLOAD + 1)) == EINVAL
    assert vol.getvalue() == before
    assert client.write(0, b"ok") == 0
    assert vol.getvalue()[:2] == b"ok"


@pytest.mark.parametrize("offset", [VOL_SIZE - 100, VOL_SIZE, 2**64 - 1])
def test_write_past_the_end_is_discarded(server: NbdServer, vol: MemoryExport, offset: int) -> None:
    before = vol.getvalue()
    client = connect(server.port)
    assert client.write(offset, b"\xee" * 4096) == ENOSPC
    assert vol.getvalue() == before
    assert client.read(VOL_SIZE - 100, 100) == (0, before[-100:])


def test_read_past_the_end_is_einval(server: NbdServer) -> None:
    client = connect(server.port)
    assert client.read(VOL_SIZE - 10, 11)[0] == EINVAL
    assert client.read(VOL_SIZE - 10, 10)[0] == 0


def test_unknown_command_and_flag_are_einval(server: NbdServer) -> None:
    client = connect(server.port)
    assert client.command(42) == EINVAL
    assert client.command(FLUSH, flags=0x40) == EINVAL
    assert client.command(FLUSH) == 0


def test_vanish_mid_header_changes_nothing(server: NbdServer, vol: MemoryExport) -> None:
    before = vol.getvalue()
    client = connect(server.port)
    client.send(struct.pack(">IHHQ", REQUEST_MAGIC, 0, WRITE, 1))  # 16 of 28 bytes
    client.close()
    wait_until(lambda: server.connection_count() == 0)
    assert vol.getvalue() == before
    still_serves(server, vol)


def test_vanish_mid_payload_writes_nothing(server: NbdServer, vol: MemoryExport) -> None:
    before = vol.getvalue()
    client = connect(server.port)
    client.request(WRITE, 0, 65536)
    client.send(b"\xee" * 32768)
    client.close()
    wait_until(lambda: server.connection_count() == 0)
    assert vol.getvalue() == before
    assert vol.writes == 0
    still_serves(server, vol)


def test_disconnect_command_closes_after_replies(server: NbdServer, vol: MemoryExport) -> None:
    client = connect(server.port)
    client.request(WRITE, 0, 3, cookie=9)
    client.send(b"abc")
    client.request(DISC, 0, 0)
    assert client.simple_reply() == (0, 9)
    assert client.is_closed()
    assert vol.getvalue()[:3] == b"abc"


def test_options_after_go_are_not_haggled(server: NbdServer, vol: MemoryExport) -> None:
    """After NBD_OPT_GO, an option header is just a request with a bad magic."""
    client = connect(server.port)
    client.send(IHAVEOPT + struct.pack(">II", OPT_LIST, 0) + bytes(12))
    assert client.is_closed()
    still_serves(server, vol)
