"""A deliberately dumb NBD client over a raw socket, for tests that must send what real clients
never would. Packing is written out here independently of ``sealbox.nbd.protocol`` so that a
wrong constant there cannot hide behind the same constant here."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO, OPT_STRUCTURED = 1, 2, 3, 6, 7, 8
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = (
    (1 << 31) | 1,
    (1 << 31) | 3,
    (1 << 31) | 6,
    (1 << 31) | 9,
)
READ, WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES = 0, 1, 2, 3, 4, 6
FUA = 1
EINVAL, EIO, ENOSPC = 22, 5, 28
TIMEOUT = 10.0
VOL_SIZE = 4 * 1024 * 1024  # the size of the test export "vol"
_OPEN: list[RawClient] = []


class Closed(Exception):
    pass


class RawClient:
    def __init__(self, port: int, *, client_flags: int = 3, greet: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        _OPEN.append(self)
        self.size = 0
        self.tflags = 0
        if greet:
            hello = self.recv(18)
            assert hello[:16] == NBDMAGIC + IHAVEOPT
            assert struct.unpack(">H", hello[16:])[0] & 1  # fixed newstyle offered
            self.send(struct.pack(">I", client_flags))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            more = self.sock.recv(n - len(buf))
            if not more:
                raise Closed(f"closed after {len(buf)} of {n} bytes")
            buf += more
        return buf

    def is_closed(self) -> bool:
        """True once the server has closed the connection (anything it sends before is
        skipped); False if it is still open after TIMEOUT."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    # --- handshake ----------------------------------------------------------------------------
    def option(self, opt: int, data: bytes = b"") -> list[tuple[int, bytes]]:
        """Send an option; return its replies up to and including the final one."""
        self.send(IHAVEOPT + struct.pack(">II", opt, len(data)) + data)
        replies = []
        while True:
            magic, ropt, rtype, length = struct.unpack(">QIII", self.recv(20))
            assert magic == REPLY_MAGIC and ropt == opt
            replies.append((rtype, self.recv(length)))
            if rtype == REP_ACK or rtype & (1 << 31):
                return replies

    def go(self, name: str, *, structured: bool = False) -> None:
        if structured:
            assert self.option(OPT_STRUCTURED)[-1][0] == REP_ACK
        raw = name.encode()
        replies = self.option(OPT_GO, struct.pack(">I", len(raw)) + raw + struct.pack(">H", 0))
        assert replies[-1][0] == REP_ACK, replies
        for rtype, data in replies:
            if rtype == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                self.size, self.tflags = struct.unpack(">QH", data[2:])

    # --- transmission -------------------------------------------------------------------------
    def request(
        self, cmd: int, offset: int, length: int, *, cookie: int = 1, flags: int = 0
    ) -> None:
        self.send(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset, length))

    def simple_reply(self) -> tuple[int, int]:
        """(error, cookie) of the next reply, which must be a simple one."""
        magic, error, cookie = struct.unpack(">IIQ", self.recv(16))
        assert magic == SIMPLE_MAGIC, hex(magic)
        return error, cookie

    def write(self, offset: int, data: bytes, *, cookie: int = 1, flags: int = 0) -> int:
        self.request(WRITE, offset, len(data), cookie=cookie, flags=flags)
        self.send(data)
        error, got = self.simple_reply()
        assert got == cookie
        return error

    def read(self, offset: int, length: int, *, cookie: int = 1) -> tuple[int, bytes]:
        """(error, data) of a read with simple replies."""
        self.request(READ, offset, length, cookie=cookie)
        error, got = self.simple_reply()
        assert got == cookie
        return error, (self.recv(length) if error == 0 else b"")

    def command(self, cmd: int, offset: int = 0, length: int = 0, *, flags: int = 0) -> int:
        self.request(cmd, offset, length, cookie=7, flags=flags)
        error, cookie = self.simple_reply()
        assert cookie == 7
        return error

    def structured_chunk(self) -> tuple[int, int, int, bytes]:
        """(flags, type, cookie, payload) of the next structured reply chunk."""
        magic, flags, rtype, cookie, length = struct.unpack(">IHHQI", self.recv(20))
        assert magic == STRUCTURED_MAGIC, hex(magic)
        return flags, rtype, cookie, self.recv(length)


def connect(port: int, name: str = "vol", *, structured: bool = False) -> RawClient:
    client = RawClient(port)
    client.go(name, structured=structured)
    return client


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)  # a poll interval, not a wait for something to happen


def close_all() -> None:
    """Close every client a test opened (a test may stop half-way through)."""
    while _OPEN:
        _OPEN.pop().close()
