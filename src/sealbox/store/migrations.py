"""Schema versions of the configuration database, applied in order at open.

The schema version lives in ``PRAGMA user_version``. A database from a newer sealbox is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

_MIGRATIONS: list[str] = [
    # 1: documents and ID counters
    """
    CREATE TABLE docs (
        coll TEXT NOT NULL,
        id INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (coll, id)
    ) WITHOUT ROWID;
    CREATE TABLE counters (coll TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(_MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def migrate(conn: sqlite3.Connection) -> None:
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the configuration database has schema version {current}, newer than this "
            f"sealbox understands ({SCHEMA_VERSION}); run a newer sealbox"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
