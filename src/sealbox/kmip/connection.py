"""One long-lived, lock-protected KMIP connection to one key server, with its reconnect rules.

Lifecycle: the connection opens on first use, trying the server's hostnames in order; it is
reused by every later operation. Before each operation a zero-wait poll checks whether the
server has closed it (idle drop, restart); if so it is reopened before anything is sent. If it
breaks *during* an operation, idempotent operations (Get, Locate, GetAttributes, Query,
DiscoverVersions) are retried once on a new connection. Others (Create, Register, Activate,
Revoke, Destroy) are not: their outcome is unknown, and :class:`KmipConnectionLost` says so,
rather than risk creating a second key silently.

Blocking: every call does network I/O under a lock. Call it from worker threads
(``asyncio.to_thread``), never on an event loop.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sealbox.kmip import _pykmip, tls
from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.errors import (
    KmipClientCertificateRejected,
    KmipConnectionLost,
    KmipError,
    KmipOperationFailed,
    KmipOperationTimedOut,
    KmipProtocolError,
    operation_failed,
)

log = logging.getLogger("sealbox.kmip")
T = TypeVar("T")
_pykmip.silence_loggers()


class _Broken(Exception):
    """The socket failed mid-operation (internal; always turned into a KmipError)."""


class _Live:
    """An open TLS socket and the PyKMIP client bound to it."""

    def __init__(self, sock: ssl.SSLSocket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.client = _pykmip.bind_client(sock)

    def close(self) -> None:
        _pykmip.unbind_client(self.client)
        tls.close_quietly(self.sock)

    def dropped_by_peer(self) -> bool:
        """Whether the server closed the connection while it sat idle (no I/O waits)."""
        if self.sock.pending():
            return True  # unread application data on an idle connection: out of sync
        # poll, not select: select() refuses descriptors >= 1024, which a cluster with
        # hundreds of open drive files reaches.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if not poller.poll(0):
            return False
        # Readable while idle: EOF, a reset, or a TLS record we have not consumed yet.
        timeout = self.sock.gettimeout()
        try:
            self.sock.setblocking(False)
            self.sock.recv(1)  # b"" (EOF) or stray data: unusable either way
            return True
        except ssl.SSLWantReadError:
            return False  # a handshake-level record (e.g. a session ticket), no data
        except OSError:
            return True
        finally:
            self.sock.settimeout(timeout)


class KmipConnection:
    """The connection to one key server; thread-safe (one operation at a time)."""

    def __init__(self, endpoint: KmipEndpoint) -> None:
        self.endpoint = endpoint
        self._context = tls.build_context(endpoint)  # fails fast on unusable PEM
        self._lock = threading.Lock()
        self._live: _Live | None = None
        # TLS session per hostname: a resumed handshake is ~5x cheaper after a reconnect.
        self._sessions: dict[str, ssl.SSLSession] = {}

    @property
    def connected_host(self) -> str | None:
        live = self._live
        return live.host if live else None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def call(self, operation: str, fn: Callable[[Any], T], *, idempotent: bool) -> T:
        """Run ``fn(pykmip_client)`` as KMIP ``operation``; see the module doc for retries."""
        with self._lock:
            live = self._ensure_open()
            try:
                return self._invoke(live, operation, fn)
            except _Broken as broken:
                self._drop()
                if not idempotent:
                    raise self._lost(live.host, operation, outcome_unknown=True) from broken
                log.info("KMIP connection to %s broke; retrying %s once", live.host, operation)
            live = self._ensure_open()
            try:
                return self._invoke(live, operation, fn)
            except _Broken as broken:
                self._drop()
                raise self._lost(live.host, operation, outcome_unknown=False) from broken

    def _ensure_open(self) -> _Live:
        if self._live is not None and self._live.dropped_by_peer():
            log.info("KMIP server %s closed the idle connection; reconnecting", self._live.host)
            self._drop()
        if self._live is None:
            self._live = self._open()
        return self._live

    def _open(self) -> _Live:
        """Connect to the first hostname that answers; else raise the most telling failure."""
        ep = self.endpoint
        errors: list[KmipError] = []
        for host in ep.hostnames:
            try:
                sock = tls.connect(
                    self._context, host, ep.port, ep.connect_timeout, self._sessions.get(host)
                )
            except KmipError as exc:
                log.warning("KMIP: %s", exc.message)
                errors.append(exc)
                continue
            if sock.session is not None:
                self._sessions[host] = sock.session
            sock.settimeout(ep.operation_timeout)
            return _Live(sock, host)
        raise max(errors, key=lambda e: e.rank)

    def _drop(self) -> None:
        if self._live is not None:
            self._live.close()
            self._live = None

    def _invoke(self, live: _Live, operation: str, fn: Callable[[Any], T]) -> T:
        port = self.endpoint.port
        try:
            return fn(live.client)
        except _pykmip.pie_exceptions.KmipOperationFailure as exc:
            raise _failure(live.host, port, operation, exc) from exc
        except KmipError:
            raise
        except TimeoutError as exc:
            self._drop()  # a late answer would desynchronise the next request
            raise KmipOperationTimedOut(
                f"Key server {live.host}:{port} did not answer {operation} within "
                f"{self.endpoint.operation_timeout:g} s; it may or may not have taken effect.",
                live.host,
                port,
            ) from exc
        except ssl.SSLError as exc:
            if (exc.reason or "") in tls.CLIENT_CERT_ALERTS:
                # TLS 1.3 servers judge our certificate after the handshake, on first use.
                self._drop()
                raise tls.classify_connect_error(exc, live.host, port, 0) from exc
            raise _Broken(exc.__class__.__name__) from exc
        except (OSError, EOFError, _pykmip.RequestLengthMismatch) as exc:
            raise _Broken(exc.__class__.__name__) from exc
        except Exception as exc:
            # Anything else came from decoding the answer: the stream cannot be trusted.
            self._drop()
            raise KmipProtocolError(
                f"Key server {live.host}:{port} sent an invalid answer to {operation}.",
                live.host,
                port,
            ) from exc

    def _lost(self, host: str, operation: str, *, outcome_unknown: bool) -> KmipConnectionLost:
        port = self.endpoint.port
        tail = " It may or may not have taken effect." if outcome_unknown else ""
        return KmipConnectionLost(
            f"The connection to key server {host}:{port} broke during {operation}.{tail}",
            host,
            port,
        )


def _failure(
    host: str, port: int, operation: str, exc: Any
) -> KmipOperationFailed | KmipClientCertificateRejected:
    status = getattr(exc.status, "name", str(exc.status))
    reason = getattr(exc.reason, "name", str(exc.reason))
    message = exc.message if isinstance(exc.message, str) else ""
    if reason == "AUTHENTICATION_NOT_SUCCESSFUL":
        # PyKMIP answers this when the certificate lacks clientAuth or carries no identity.
        return KmipClientCertificateRejected(
            f"Key server {host}:{port} rejected the client certificate ({status} {reason}).",
            host,
            port,
        )
    return operation_failed(host, port, operation, status, reason, message)


def raise_for_result(result: Any) -> None:
    """Raise PyKMIP's own failure for a failed low-level result (``proxy.*`` calls return
    results instead of raising), so that ``_invoke`` translates every failure the same way."""
    enums = _pykmip.enums
    status = result.result_status.value
    if status == enums.ResultStatus.SUCCESS:
        return
    reason = result.result_reason.value if result.result_reason is not None else None
    message = result.result_message.value if result.result_message is not None else ""
    raise _pykmip.pie_exceptions.KmipOperationFailure(
        status, reason or enums.ResultReason.GENERAL_FAILURE, message or ""
    )
