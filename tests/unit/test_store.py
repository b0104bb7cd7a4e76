from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from sealbox.store.migrations import SCHEMA_VERSION, SchemaTooNew
from sealbox.store.sqlite import SqliteStore


def test_commit_and_rollback(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    with store.write() as txn:
        txn.put("drives", 1, {"a": 1})
    with pytest.raises(RuntimeError), store.write() as txn:
        txn.put("drives", 2, {"a": 2})
        txn.put("drives", 1, {"a": 99})
        raise RuntimeError("the call failed")
    with store.read() as txn:
        assert txn.list("drives") == [(1, {"a": 1})]
    store.close()


def test_ids_are_never_reused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    with store.write() as txn:
        first = txn.next_id("faults")
        txn.put("faults", first, {})
        txn.delete("faults", first)
    with store.write() as txn:
        assert txn.next_id("faults") == first + 1
    store.close()


def test_reads_cannot_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    with pytest.raises(RuntimeError), store.read() as txn:
        txn.put("x", 1, {})
    store.close()


def test_durable_settings_and_private_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    with store.write() as txn:
        txn.put("cluster", 0, {"name": "x"})
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert stat.S_IMODE((tmp_path / "c.db").stat().st_mode) == 0o600
    store.close()
    reopened = SqliteStore(tmp_path / "c.db")
    with reopened.read() as txn:
        assert txn.get("cluster", 0) == {"name": "x"}
    reopened.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        SqliteStore(tmp_path / "c.db")


def test_writers_from_many_threads_serialise(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")

    def bump() -> None:
        for _ in range(50):
            with store.write() as txn:
                doc = txn.get("counter", 0) or {"n": 0}
                doc["n"] += 1
                txn.put("counter", 0, doc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.read() as txn:
        assert txn.get("counter", 0) == {"n": 200}
    store.close()
