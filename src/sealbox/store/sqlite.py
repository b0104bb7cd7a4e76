"""The configuration store on SQLite: one file in the data directory.

WAL with ``synchronous=FULL`` makes every committed transaction durable across power loss, and
``BEGIN IMMEDIATE`` serialises writers, so one API call is one transaction and a failed call
changes nothing. Each thread gets its own connection (SQLite connections are not shareable).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sealbox.store.base import Doc
from sealbox.store.migrations import migrate

_BUSY_TIMEOUT_MS = 30_000


class SqliteTxn:
    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self._writable = writable

    def get(self, coll: str, doc_id: int) -> Doc | None:
        row = self._conn.execute(
            "SELECT body FROM docs WHERE coll = ? AND id = ?", (coll, doc_id)
        ).fetchone()
        return None if row is None else _load(row[0])

    def put(self, coll: str, doc_id: int, doc: Doc) -> None:
        self._check_writable()
        self._conn.execute(
            "INSERT INTO docs (coll, id, body) VALUES (?, ?, ?) "
            "ON CONFLICT (coll, id) DO UPDATE SET body = excluded.body",
            (coll, doc_id, json.dumps(doc, separators=(",", ":"), sort_keys=True)),
        )

    def delete(self, coll: str, doc_id: int) -> bool:
        self._check_writable()
        cur = self._conn.execute("DELETE FROM docs WHERE coll = ? AND id = ?", (coll, doc_id))
        return cur.rowcount > 0

    def list(self, coll: str) -> list[tuple[int, Doc]]:
        rows = self._conn.execute(
            "SELECT id, body FROM docs WHERE coll = ? ORDER BY id", (coll,)
        ).fetchall()
        return [(int(r[0]), _load(r[1])) for r in rows]

    def next_id(self, coll: str) -> int:
        self._check_writable()
        self._conn.execute(
            "INSERT INTO counters (coll, last) VALUES (?, 1) "
            "ON CONFLICT (coll) DO UPDATE SET last = last + 1",
            (coll,),
        )
        row = self._conn.execute("SELECT last FROM counters WHERE coll = ?", (coll,)).fetchone()
        return int(row[0])

    def _check_writable(self) -> None:
        if not self._writable:
            raise RuntimeError("write through a read-only transaction")


def _load(body: str) -> Doc:
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("stored document is not an object")
    return doc


class SqliteStore:
    """A :class:`sealbox.store.base.ConfigStore` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        new = not path.exists()
        conn = self._conn()
        if new:
            os.chmod(path, 0o600)
        migrate(conn)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def read(self) -> Iterator[SqliteTxn]:
        conn = self._conn()
        conn.execute("BEGIN DEFERRED")
        try:
            yield SqliteTxn(conn, writable=False)
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[SqliteTxn]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTxn(conn, writable=True)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
