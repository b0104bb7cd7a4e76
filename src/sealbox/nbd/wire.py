"""Exact-length socket reads and multi-part sends, shared by the handshake and transmission.

Transmission runs on a *blocking* socket so that ``recv(n, MSG_WAITALL)`` fills a whole
payload in one system call straight into the ``bytes`` object handed to the export (no copy
from a bytearray, which ``Export.write`` would need since it takes ``bytes``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence

_DISCARD_CHUNK = 1024 * 1024
_MAX_PARTS = 512  # buffers per sendmsg, well under Linux's IOV_MAX (1024)


class ConnectionClosed(Exception):
    """The peer went away (EOF or socket error) or must be dropped; nothing more can be read."""


class Wire:
    """One client socket: reads from one thread, sends from any thread (serialised by a lock)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self._deadline: float | None = None

    def set_deadline(self, deadline: float | None) -> None:
        """Reads fail with :class:`ConnectionClosed` after the monotonic time ``deadline``
        (used during the handshake, so that a silent client cannot hold a thread); ``None``
        makes the socket blocking again."""
        self._deadline = deadline
        if deadline is None:
            self.sock.settimeout(None)

    def recv_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`ConnectionClosed`."""
        if n == 0:
            return b""
        data = self._recv(n)
        if len(data) == n:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self._recv(n - got)
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def discard(self, n: int) -> None:
        """Read and drop ``n`` bytes (the payload of a rejected write) with bounded memory."""
        while n > 0:
            n -= len(self._recv(min(n, _DISCARD_CHUNK)))

    def _recv(self, n: int) -> bytes:
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionClosed("handshake timed out")
            self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(n, socket.MSG_WAITALL)
        except OSError as exc:  # includes TimeoutError and ConnectionResetError
            raise ConnectionClosed(str(exc)) from exc
        if not data:
            raise ConnectionClosed("end of stream")
        return data

    def send(self, parts: Sequence[bytes | memoryview]) -> None:
        """Send ``parts`` back to back, uninterrupted by other senders; raises
        :class:`ConnectionClosed`. The replies of a merged batch may be thousands of parts:
        they go out in gather-sends of at most :data:`_MAX_PARTS` (the kernel's IOV_MAX is
        1024)."""
        try:
            with self.send_lock:
                for start in range(0, len(parts), _MAX_PARTS):
                    group = parts[start:start + _MAX_PARTS]
                    sent = self.sock.sendmsg(group)
                    total = sum(len(p) for p in group)
                    if sent < total:  # rare: a signal or a full buffer cut the send short
                        self.sock.sendall(b"".join(group)[sent:])
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc

    def shutdown(self) -> None:
        """Wake a reader blocked in ``recv`` and end the connection (idempotent)."""
        with contextlib.suppress(OSError):  # already shut or closed: nothing to wake
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self.sock.close()
