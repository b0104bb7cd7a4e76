"""The NBD server: a listening socket, a reader and a sender thread per connection (see
``session.py`` for why threads), a pool of workers shared by all connections (``workers.py``),
and a prompt :meth:`NbdServer.stop`.

The server is thread-based; from asyncio call ``await asyncio.to_thread(server.stop)`` (``start``
only binds and spawns a thread, so it may be called directly).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from sealbox.nbd.export import ExportCatalog
from sealbox.nbd.handshake import Handshake
from sealbox.nbd.session import DEFAULT_MERGE_BYTES, Session
from sealbox.nbd.wire import ConnectionClosed, Wire
from sealbox.nbd.workers import WorkerPool, default_size

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Tunables of :class:`NbdServer`; the defaults suit a storage node."""

    multi_conn: bool = True
    # Export calls in flight over all connections (nbd/workers.py): two per core, at least 4.
    workers: int = field(default_factory=default_size)
    budget_bytes: int = 64 * 1024 * 1024  # request bytes in flight per connection
    # Adjacent queued reads or writes run as one export call up to this size, never across a
    # multiple of it (nbd/batching.py): the storage engine's chunk.
    merge_bytes: int = DEFAULT_MERGE_BYTES
    max_connections: int = 256
    handshake_timeout: float = 30.0  # seconds a client may take to reach transmission


class NbdServer:
    """Serves the exports of ``catalog`` over NBD on ``host``:``port`` (0 = any free port,
    read :attr:`port` after :meth:`start`).

    ``settings.multi_conn`` advertises NBD_FLAG_CAN_MULTI_CONN, which is right only because the
    ``Export`` contract makes ``flush`` cover every acknowledged write, whatever connection
    made it, and every connection to one export sees the same data.
    """

    def __init__(
        self,
        catalog: ExportCatalog,
        host: str = "127.0.0.1",
        port: int = 10809,
        settings: ServerSettings | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings or ServerSettings()
        self._host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._bound_port: int | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, _Connection] = {}
        self._stopping = False
        self.pool = WorkerPool(self.settings.workers)

    @property
    def port(self) -> int:
        """The bound port; valid after :meth:`start`."""
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return self._bound_port

    @property
    def host(self) -> str:
        return self._host

    def start(self, listener: socket.socket | None = None) -> None:
        """Bind, listen and start accepting in a background thread; raises ``OSError`` if the
        address cannot be bound. A ``listener`` already bound and listening is used instead
        (``sealbox up`` binds before it creates anything)."""
        if self._listener is not None:
            raise RuntimeError("server already started")
        if listener is None:
            listener = socket.create_server((self._host, self._port), backlog=128,
                                            reuse_port=False)
        self._listener = listener
        self.pool.start()
        self._bound_port = int(listener.getsockname()[1])
        self._accept_thread = threading.Thread(target=self._accept_loop, name="nbd-accept")
        self._accept_thread.daemon = True
        self._accept_thread.start()
        log.info("nbd server listening on %s:%d", self._host, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and wait up to ``timeout`` seconds for their
        threads (an export call that never returns cannot be interrupted; its thread is a
        daemon and is left behind)."""
        with self._lock:
            self._stopping = True
            connections = list(self._connections.items())
        if self._listener is not None:
            # shutdown() wakes the accept() blocked in the other thread; close() alone does not.
            with contextlib.suppress(OSError):  # not connected: Linux still wakes accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        deadline = time.monotonic() + timeout
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        for _, conn in connections:
            conn.stop()
        for thread, _ in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.pool.stop(max(0.0, deadline - time.monotonic()))

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def queued_requests(self) -> int:
        """Requests received and waiting for a worker, over all connections (queue depth)."""
        with self._lock:
            connections = list(self._connections.values())
        return sum(conn.queued_requests() for conn in connections)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, peer = self._listener.accept()
            except OSError:
                with self._lock:
                    if self._stopping:
                        return
                log.exception("nbd accept failed")
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin on the error
                continue
            self._admit(sock, peer)

    def _admit(self, sock: socket.socket, peer: object) -> None:
        with self._lock:
            if self._stopping or len(self._connections) >= self.settings.max_connections:
                log.warning("nbd: refusing connection from %s (limit or stopping)", peer)
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, Wire(sock), peer)
            thread = threading.Thread(target=conn.run, name=f"nbd-conn-{peer}", daemon=True)
            self._connections[thread] = conn
            thread.start()

    def forget(self) -> None:
        """Called by a connection thread as it ends."""
        with self._lock:
            self._connections.pop(threading.current_thread(), None)


class _Connection:
    """Handshake then transmission for one client, on its own thread."""

    def __init__(self, server: NbdServer, wire: Wire, peer: object) -> None:
        self._server = server
        self._wire = wire
        self._peer = peer
        self._session: Session | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def run(self) -> None:
        cfg = self._server.settings
        try:
            neg = Handshake(
                self._wire,
                self._server.catalog,
                multi_conn=cfg.multi_conn,
                timeout=cfg.handshake_timeout,
            ).run()
            session = Session(
                self._wire, neg, pool=self._server.pool,
                budget_bytes=cfg.budget_bytes, merge_bytes=cfg.merge_bytes,
            )
            with self._lock:
                if self._stopped:
                    return
                self._session = session
            log.debug("nbd %s: %s connected", neg.name, self._peer)
            session.serve()
        except ConnectionClosed as exc:
            log.debug("nbd: %s disconnected during handshake: %s", self._peer, exc)
        except Exception:
            log.exception("nbd: connection from %s failed", self._peer)
        finally:
            self._wire.close()
            self._server.forget()

    def queued_requests(self) -> int:
        with self._lock:
            session = self._session
        return session.queued_requests() if session is not None else 0

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            session = self._session
        if session is not None:
            session.stop()
        else:
            self._wire.shutdown()
