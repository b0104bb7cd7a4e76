"""The audit log: who called which state-changing method, and how it ended.

Entries hold parameter *names*, never values, so no password, key or certificate can reach the
log through it. They are kept in the configuration store and written to the process log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sealbox.cluster.clock import now_iso_precise
from sealbox.store.base import ConfigStore, Doc

COLL = "audit"
log = logging.getLogger("sealbox.audit")


class AuditLog:
    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def record(
        self, user: str, method: str, params: Iterable[str], outcome: str, detail: str = ""
    ) -> None:
        entry: Doc = {
            "time": now_iso_precise(),
            "user": user,
            "method": method,
            "params": sorted(params),
            "outcome": outcome,
            "detail": detail,
        }
        with self._store.write() as txn:
            txn.put(COLL, txn.next_id(COLL), entry)
        log.info("audit user=%s method=%s params=%s outcome=%s %s", user, method,
                 ",".join(entry["params"]), outcome, detail)

    def entries(self) -> list[Doc]:
        with self._store.read() as txn:
            return [d for _, d in txn.list(COLL)]

    def numbered(self) -> list[tuple[int, Doc]]:
        """Every entry with its number (ListEvents' eventID), oldest first."""
        with self._store.read() as txn:
            return sorted(txn.list(COLL), key=lambda item: item[0])
