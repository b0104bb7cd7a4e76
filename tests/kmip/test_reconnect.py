"""A connection that breaks mid-operation: retried once if idempotent, never silently if not.

A real TCP relay sits between the adapter and a real PyKMIP server; on demand it lets one
request through and then cuts the connection instead of relaying the answer, which is what a
server crash or network failure after processing a request looks like to the client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from sealbox.kmip import KmipClient, KmipConnectionLost, KmipEndpoint
from sealbox.kms.testing import RunningKms


class CuttingRelay:
    """Relays TCP to the key server; ``cut_next_answer`` drops the next server-to-client data
    and closes that connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.cut_next_answer = threading.Event()
        self._stopping = threading.Event()
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        # Closing a socket does not wake a thread blocked in accept(): poll a stop flag.
        self.listener.settimeout(0.05)
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._spawn(self._pump, client, upstream, False)
            self._spawn(self._pump, upstream, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.cut_next_answer.is_set():
                    self.cut_next_answer.clear()
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):  # shutdown wakes the other pump blocked in recv
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(5)
        self.listener.close()


@pytest.fixture
def relay(kms: RunningKms) -> Iterator[CuttingRelay]:
    r = CuttingRelay(kms.port)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def relayed(endpoint: KmipEndpoint, relay: CuttingRelay) -> Iterator[KmipClient]:
    with KmipClient(replace(endpoint, port=relay.port)) as c:
        c.test_connection()  # connect first, so that the cut hits an answer, not a handshake
        yield c


def test_idempotent_get_is_retried_once_transparently(
    relayed: KmipClient, relay: CuttingRelay
) -> None:
    uid = relayed.create_symmetric_key()
    key = relayed.get(uid)
    relay.cut_next_answer.set()
    assert relayed.get(uid) == key
    assert relay.connections == 2  # the retry went over a new connection


def test_lost_create_is_reported_not_repeated(
    relayed: KmipClient, relay: CuttingRelay, client: KmipClient
) -> None:
    relay.cut_next_answer.set()
    with pytest.raises(KmipConnectionLost) as info:
        relayed.create_symmetric_key("lost-answer")
    assert "broke during Create" in info.value.message
    assert "may or may not have taken effect" in info.value.message
    # The server did create it, once; the adapter did not silently create a second one.
    assert len(client.locate("lost-answer")) == 1
