"""What one rekey costs, counted: KMIP operations by kind, new TLS connections, drive fsyncs and
configuration store write transactions (with the time inside KMIP calls and fsyncs), for
``bench/rekey.py``. ``COUNTER.install()`` wraps the one function each of them goes through,
process-wide; ``uninstall()`` puts the originals back."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sealbox.kmip.connection import KmipConnection
from sealbox.storage import drive_io
from sealbox.store.sqlite import SqliteStore


@dataclass
class Counts:
    kmip: collections.Counter[str] = field(default_factory=collections.Counter)
    connections: int = 0
    fsyncs: int = 0
    store_writes: int = 0
    kmip_seconds: float = 0.0  # inside KmipConnection.call (TLS set-up included)
    fsync_seconds: float = 0.0  # inside drive fsyncs

    def ops(self) -> int:
        return sum(self.kmip.values())

    def kinds(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.kmip.items())) or "-"

    def copy(self) -> Counts:
        return replace(self, kmip=collections.Counter(self.kmip))

    def minus(self, before: Counts) -> Counts:
        kmip = collections.Counter(self.kmip)
        kmip.subtract(before.kmip)
        return Counts(+kmip, self.connections - before.connections,
                      self.fsyncs - before.fsyncs, self.store_writes - before.store_writes,
                      self.kmip_seconds - before.kmip_seconds,
                      self.fsync_seconds - before.fsync_seconds)


class Counter:
    """Counts (and times) KMIP operations, TLS connections, drive fsyncs and configuration
    store write transactions, process-wide, by wrapping the one function each goes through."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = Counts()
        self._undo: list[Callable[[], None]] = []

    def snapshot(self) -> Counts:
        with self._lock:
            return self.now.copy()

    def since(self, before: Counts) -> Counts:
        return self.snapshot().minus(before)

    def _add(self, what: str, seconds: float = 0.0, kind: str = "") -> None:
        with self._lock:
            c = self.now
            if what == "kmip":
                c.kmip[kind] += 1
                c.kmip_seconds += seconds
            elif what == "fsync":
                c.fsyncs += 1
                c.fsync_seconds += seconds
            else:
                setattr(c, what, getattr(c, what) + 1)

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        add = self._add

        def call(orig: Any) -> Any:
            def counted(conn: Any, operation: str, fn: Any, *, idempotent: bool) -> Any:
                t0 = time.perf_counter()
                try:
                    return orig(conn, operation, fn, idempotent=idempotent)
                finally:
                    add("kmip", time.perf_counter() - t0, operation)
            return counted

        def counting(what: str) -> Callable[[Any], Any]:
            """A wrapper that counts each call of a one-argument method under ``what``."""
            def wrap(orig: Any) -> Any:
                def counted(obj: Any) -> Any:
                    add(what)
                    return orig(obj)
                return counted
            return wrap

        def synced(orig: Any) -> Any:
            def counted(fd: int) -> None:
                t0 = time.perf_counter()
                try:
                    orig(fd)
                finally:
                    add("fsync", time.perf_counter() - t0)
            return counted

        self._patch(KmipConnection, "call", call)
        self._patch(KmipConnection, "_open", counting("connections"))
        # Drive headers are made durable with fsync on a plain file and fdatasync through a
        # self-encrypting drive (what the cluster provisions): both are drive fsyncs.
        self._patch(drive_io, "sync_all", synced)
        self._patch(drive_io, "sync_data", synced)
        self._patch(SqliteStore, "write", counting("store_writes"))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


COUNTER = Counter()
