"""Cluster faults: raised by monitors, resolved by themselves, cleared by the admin.

A fault is identified by its code and a *subject key* (e.g. ``drive:5`` or ``provider:2``), so a
monitor that sees the same condition again updates the one open fault instead of adding another.
Resolving keeps the fault with ``resolved: true`` and a ``resolvedDate`` until it is cleared.
Element sends ``resolvedDate`` as ``""`` while a fault is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sealbox.cluster.clock import now_iso
from sealbox.errors import InvalidParameter
from sealbox.store.base import ConfigStore, Doc, Txn

COLL = "faults"


class Severity(StrEnum):
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"
    BEST_PRACTICE = "bestPractice"


class FaultType(StrEnum):
    NODE = "node"
    DRIVE = "drive"
    CLUSTER = "cluster"
    SERVICE = "service"
    VOLUME = "volume"


class FaultFilter(StrEnum):
    CURRENT = "current"
    RESOLVED = "resolved"
    ALL = "all"

    @classmethod
    def parse(cls, value: str, param: str) -> FaultFilter:
        try:
            return cls(value)
        except ValueError:
            raise InvalidParameter(
                f"Invalid parameter '{param}': {value!r} is not one of current, resolved, all."
            ) from None


@dataclass(frozen=True)
class Fault:
    code: str
    severity: Severity
    type: FaultType
    details: str
    subject: str = "cluster"
    node_id: int = 0
    drive_ids: Sequence[int] = field(default_factory=tuple)
    service_id: int = 0
    data: dict[str, Any] | None = None


def _doc(fault_id: int, f: Fault) -> Doc:
    return {
        "clusterFaultID": fault_id,
        "code": f.code,
        "severity": str(f.severity),
        "type": str(f.type),
        "details": f.details,
        "nodeID": f.node_id,
        "driveIDs": list(f.drive_ids),
        "driveID": f.drive_ids[0] if f.drive_ids else 0,
        "serviceID": f.service_id,
        "nodeHardwareFaultID": 0,
        "resolved": False,
        "date": now_iso(),
        "resolvedDate": "",
        "data": f.data,
        "networkInterface": "",
        "externalSource": "",
        "_subject": f.subject,
    }


def public(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class FaultService:
    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def raise_fault(self, fault: Fault, txn: Txn | None = None) -> int:
        if txn is None:
            with self._store.write() as t:
                return self.raise_fault(fault, t)
        for fid, doc in txn.list(COLL):
            if _is_open(doc, fault.code, fault.subject):
                # Still open: keep its ID and date, bring what it says up to date.
                fresh = {k: v for k, v in _doc(fid, fault).items()
                         if k in ("details", "severity", "driveIDs", "driveID", "nodeID",
                                  "data")}
                if any(doc[k] != v for k, v in fresh.items()):
                    doc.update(fresh)
                    txn.put(COLL, fid, doc)
                return fid
        fid = txn.next_id(COLL)
        txn.put(COLL, fid, _doc(fid, fault))
        return fid

    def resolve(self, code: str, subject: str, txn: Txn | None = None) -> bool:
        if txn is None:
            with self._store.write() as t:
                return self.resolve(code, subject, t)
        changed = False
        for fid, doc in txn.list(COLL):
            if _is_open(doc, code, subject):
                doc.update(resolved=True, resolvedDate=now_iso())
                txn.put(COLL, fid, doc)
                changed = True
        return changed

    def open_faults(self, code: str | None = None) -> list[Doc]:
        with self._store.read() as txn:
            return [
                public(d) for _, d in txn.list(COLL)
                if not d["resolved"] and (code is None or d["code"] == code)
            ]

    def open_subjects(self, txn: Txn, code: str) -> list[str]:
        """Subjects of the open faults with ``code``, inside the caller's transaction."""
        return [
            d["_subject"] for _, d in txn.list(COLL) if not d["resolved"] and d["code"] == code
        ]

    def list(self, which: FaultFilter) -> list[Doc]:
        with self._store.read() as txn:
            return [public(d) for _, d in txn.list(COLL) if _matches(d, which)]

    def clear(self, which: FaultFilter) -> int:
        with self._store.write() as txn:
            doomed = [fid for fid, d in txn.list(COLL) if _matches(d, which)]
            for fid in doomed:
                txn.delete(COLL, fid)
        return len(doomed)


def _is_open(doc: Doc, code: str, subject: str) -> bool:
    return not doc["resolved"] and doc["code"] == code and doc.get("_subject") == subject


def _matches(doc: Doc, which: FaultFilter) -> bool:
    if which is FaultFilter.ALL:
        return True
    return bool(doc["resolved"]) == (which is FaultFilter.RESOLVED)
