"""The listening sockets of ``sealbox up``, bound before anything else happens.

Both the API and the NBD socket are bound first, before the data dir is created or touched, and
then handed to their servers. A port that is taken (or an address that is not this machine's)
is found while nothing exists yet that could be left half made: no cluster, no drives, and above
all no generated admin password that would never be shown.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass

BACKLOG = 128


class ListenError(Exception):
    """A listener could not be bound; the message is one line naming the option and port."""


@dataclass(frozen=True)
class Listeners:
    api: socket.socket
    nbd: socket.socket

    def close(self) -> None:
        """Close both (used when start-up stops before the servers own them)."""
        for sock in (self.api, self.nbd):
            with contextlib.suppress(OSError):
                sock.close()


def bind_listeners(host: str, port: int, nbd_port: int) -> Listeners:
    """Bind and listen on ``host``:``port`` (API) and ``host``:``nbd_port`` (NBD); raises
    :class:`ListenError` if either cannot be bound, with the other one closed again."""
    api = bind(host, port, "--port")
    try:
        nbd = bind(host, nbd_port, "--nbd-port")
    except ListenError:
        api.close()
        raise
    return Listeners(api, nbd)


def bind(host: str, port: int, option: str) -> socket.socket:
    """One listening TCP socket on the first address ``host`` resolves to."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on {host}:{port} (--host): {_reason(error)}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As asyncio and socket.create_server do: a port left in TIME_WAIT by the last run is
        # free again (on Linux this never lets two listeners share a port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        # EADDRNOTAVAIL: the address is not one of this machine's, so --host is what is wrong.
        blamed = "--host" if error.errno == errno.EADDRNOTAVAIL else option
        raise ListenError(
            f"cannot listen on {_show(host, port)} ({blamed}): {_reason(error)}") from None
    return sock


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(error: OSError) -> str:
    """``address already in use``: the system's words, lower-cased to read as one sentence."""
    text = error.strerror or str(error)
    return text[:1].lower() + text[1:]
