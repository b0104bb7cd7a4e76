"""Volumes as Element shows them, kept consistent with the storage engine that holds them.

The engine owns the data and the chunk maps; the configuration store owns Element's view
(name, account, status, QoS). They are changed in an order that a crash cannot break: a new
volume is recorded as ``init`` before the engine creates it and becomes ``active`` after; a
purge is recorded as ``purging`` before the engine frees it. :meth:`VolumeService.reconcile`
finishes whatever a crash interrupted, at the next start.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import uuid
from typing import TypeGuard

from sealbox.cluster.accounts import get_account
from sealbox.cluster.clock import now_iso
from sealbox.cluster.storage import StorageService
from sealbox.cluster.volume_access import DEFAULT_ACCESS, DRAIN_TIMEOUT, AccessGates
from sealbox.errors import Exists, InvalidParameter, NotPermitted, VolumeNotFound
from sealbox.storage.engine import StorageEngine
from sealbox.store.base import ConfigStore, Doc, Txn

COLL = "volumes"
MIB = 1 << 20
MAX_SIZE = 16 << 40  # Element's largest volume
PURGE_AFTER = dt.timedelta(hours=8)  # Element purges deleted volumes after eight hours
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
log = logging.getLogger("sealbox.volumes")


def get_volume(txn: Txn, volume_id: int, status: str | None = "active") -> Doc:
    doc = txn.get(COLL, volume_id)
    if doc is None or (status is not None and doc["status"] != status):
        raise VolumeNotFound(f"VolumeID {volume_id} does not exist"
                             + ("." if status is None or doc is None else f" ({status})."))
    return doc


def round_size(size: int) -> int:
    """Element rounds ``totalSize`` up to a whole MiB."""
    rounded = -(-size // MIB) * MIB
    if size < 1 or rounded > MAX_SIZE:
        raise InvalidParameter(
            f"Invalid parameter 'totalSize': {size} is out of range (1 byte to {MAX_SIZE})."
        )
    return rounded


def _check_name(txn: Txn, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidParameter(
            "Invalid parameter 'name': use 1-64 letters, digits or '-', starting with a letter "
            "or digit (it is also the volume's NBD export name)."
        )
    if any(d["name"] == name for _, d in txn.list(COLL)):
        raise Exists(f"A volume named '{name}' already exists (names are NBD export names).")


FIFO_DEFAULT = 24  # Element's default fifoSize


def volume_info(doc: Doc, unique_id: str = "sbx") -> Doc:
    """The Element ``Volume`` object."""
    vid = doc["volumeID"]
    hexid = uuid.UUID(doc["volumeUUID"]).hex
    return {
        "volumeID": vid, "name": doc["name"], "accountID": doc["accountID"],
        "createTime": doc["createTime"], "volumeUUID": doc["volumeUUID"],
        "volumeConsistencyGroupUUID": doc["volumeUUID"], "enableSnapMirrorReplication": False,
        "status": "active" if doc["status"] in ("active", "init") else "deleted",
        "access": doc["access"], "enable512e": doc["enable512e"],
        "iqn": f"iqn.2010-01.com.sealbox:{unique_id}.{doc['name']}.{vid}",
        "scsiEUIDeviceID": hexid[:16], "scsiNAADeviceID": "6" + hexid[1:],
        "qos": doc["qos"], "qosPolicyID": None, "volumeAccessGroups": [], "volumePairs": [],
        "deleteTime": doc.get("deleteTime", ""), "purgeTime": doc.get("purgeTime", ""),
        "lastAccessTime": None, "lastAccessTimeIO": None, "sliceCount": 1,
        "totalSize": doc["totalSize"], "blockSize": 4096, "virtualVolumeID": None,
        "attributes": doc["attributes"], "currentProtectionScheme": "doubleHelix",
        "previousProtectionScheme": None, "fifoSize": doc.get("fifoSize", FIFO_DEFAULT),
        "minFifoSize": doc.get("minFifoSize", 0),
    }


# Element's GetDefaultQoS values and documented limits (the contract JSON has none); burstTime
# is computed by Element and only recorded here, so it keeps the loose bound it always had.
QOS_DEFAULTS: Doc = {"minIOPS": 50, "maxIOPS": 15000, "burstIOPS": 15000, "burstTime": 60,
                     "curve": {}}
QOS_RANGES = {"minIOPS": (50, 15000), "maxIOPS": (100, 200000), "burstIOPS": (100, 200000),
              "burstTime": (0, 1_000_000)}
_QOS_ORDER = (("minIOPS", "maxIOPS"), ("maxIOPS", "burstIOPS"))


def merge_qos(base: Doc, given: Doc, base_is: str) -> Doc:
    """``base`` with the members of ``given`` (an Element QoS object) applied: members not given
    keep their values, as Element's ModifyVolume documents. QoS is not enforced, but it is
    validated as Element does, so that settings an Element cluster would refuse are never
    recorded; ``InvalidParameter`` lists every problem. ``base_is`` says what ``base`` is
    ("current", "default"), for messages that compare with a member not given."""
    given = {k: v for k, v in given.items() if v is not None}  # null = not given, as elsewhere
    problems = [p for key, value in given.items() if (p := _qos_member_problem(key, value))]
    merged = {**base, **{k: v for k, v in given.items() if k in QOS_DEFAULTS}}
    for low, high in _QOS_ORDER:
        a, b = merged.get(low), merged.get(high)
        if _is_int(a) and _is_int(b) and a > b:
            note = "" if high in given else f", the {base_is} qos.{high}"
            problems.append(f"qos.{low} must be at most qos.{high} ({a} > {b}{note})")
    if problems:
        raise InvalidParameter(f"Invalid parameter 'qos': {'; '.join(problems)}.")
    return merged


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _qos_member_problem(key: str, value: object) -> str | None:
    if key == "curve":
        if isinstance(value, dict) and all(_is_int(v) for v in value.values()):
            return None
        return "qos.curve must be an object of integers (I/O size: cost)"
    if key not in QOS_RANGES:
        return f"unknown member qos.{key:.40} (expected {', '.join(QOS_DEFAULTS)})"
    low, high = QOS_RANGES[key]
    if not _is_int(value):
        return f"qos.{key} must be an integer, not {value!r:.40}"
    if not low <= value <= high:
        return f"qos.{key} is {value}, out of range ({low} to {high})"
    return None


class VolumeService:
    def __init__(self, store: ConfigStore, storage: StorageService) -> None:
        self._store = store
        self._storage = storage
        # The access NBD enforces (cluster/volume_access.py); the NBD catalog shares them.
        self.gates = AccessGates()
        # Serialises access changes, so that the gates end in the order the store did.
        self._access_lock = threading.Lock()

    def create(self, name: str, account_id: int, size: int, extra: Doc) -> Doc:
        """``extra``: the optional CreateVolume parameters (access, qos, …), already checked
        against their declared types; QoS is checked here, before anything is created."""
        engine = self._storage.require_engine()
        size = round_size(size)
        qos = merge_qos(QOS_DEFAULTS, extra.get("qos") or {}, "default")
        with self._store.write() as txn:
            get_account(txn, account_id)
            _check_name(txn, name)
            vid = txn.next_id(COLL)
            doc: Doc = {
                "volumeID": vid, "name": name, "accountID": account_id, "totalSize": size,
                "status": "init", "createTime": now_iso(), "volumeUUID": str(uuid.uuid4()),
                "access": extra.get("access") or DEFAULT_ACCESS,
                "enable512e": bool(extra.get("enable512e")), "qos": qos,
                "attributes": extra.get("attributes") or {},
                "fifoSize": extra.get("fifoSize") or FIFO_DEFAULT,
                "minFifoSize": extra.get("minFifoSize") or 0,
            }
            txn.put(COLL, vid, doc)
        engine.create_volume(vid, name, size)
        return self.update(vid, status="active")

    def update(self, vid: int, **changes: object) -> Doc:
        """Record ``changes``; a new ``access`` is in force on NBD when this returns: no
        request it forbids is admitted any more, and those already running have ended (or
        are stuck: a warning after DRAIN_TIMEOUT seconds, then this returns anyway)."""
        with self._access_lock:  # the gates take the accesses in the order the store did
            with self._store.write() as txn:
                doc = get_volume(txn, vid, status=None)
                doc.update(changes)
                txn.put(COLL, vid, doc)
            gate = self.gates.apply(vid, doc["access"]) if "access" in changes else None
        # The wait is outside the lock: one volume's stuck request holds up only its own
        # ModifyVolume, not every volume update of the cluster.
        if gate is not None and not gate.drain():
            log.warning("volume %d: access is now %s, but requests it forbids were still "
                        "running after %.0f s", vid, doc["access"], DRAIN_TIMEOUT)
        return doc

    def grow(self, vid: int, size: int) -> Doc:
        engine = self._storage.require_engine()
        size = round_size(size)
        with self._store.read() as txn:
            doc = get_volume(txn, vid)
        if size < doc["totalSize"]:
            raise InvalidParameter(
                f"Invalid parameter 'totalSize': volumes can only grow ({size} is smaller than "
                f"the current {doc['totalSize']})."
            )
        if size > doc["totalSize"]:
            engine.resize_volume(vid, size)
        return self.update(vid, totalSize=size)

    def delete(self, vid: int) -> Doc:
        with self._store.write() as txn:
            doc = get_volume(txn, vid)
            now = dt.datetime.now(dt.UTC)
            doc.update(status="deleted", deleteTime=now_iso(),
                       purgeTime=(now + PURGE_AFTER).strftime("%Y-%m-%dT%H:%M:%SZ"))
            txn.put(COLL, vid, doc)
            return doc

    def restore(self, vid: int) -> None:
        with self._store.write() as txn:
            doc = get_volume(txn, vid, status="deleted")
            doc.update(status="active", deleteTime="", purgeTime="")
            txn.put(COLL, vid, doc)

    def purge(self, vid: int) -> None:
        engine = self._storage.require_engine()
        self._check_purgeable(vid)
        self.update(vid, status="purging")
        self._finish_purge(engine, vid)

    def _check_purgeable(self, vid: int) -> None:
        with self._store.read() as txn:
            doc = txn.get(COLL, vid)
        if doc is None:
            raise VolumeNotFound(f"VolumeID {vid} does not exist.")
        if doc["status"] not in ("deleted", "purging"):
            raise NotPermitted(f"Volume {vid} is {doc['status']}; delete it before purging.")

    def _finish_purge(self, engine: StorageEngine, vid: int) -> None:
        if vid in engine.metadata.volumes:
            engine.delete_volume(vid)
        with self._store.write() as txn:
            txn.delete(COLL, vid)
        self.gates.forget(vid)

    def purge_due(self) -> None:
        """Monitor check: purge deleted volumes whose purge time has come."""
        if self._storage.engine is None:
            return
        now = now_iso()
        with self._store.read() as txn:
            due = [i for i, d in txn.list(COLL)
                   if d["status"] == "deleted" and d.get("purgeTime") and d["purgeTime"] <= now]
        for vid in due:
            self.purge(vid)

    def reconcile(self) -> None:
        """Finish what a crash interrupted, once the engine is open."""
        engine = self._storage.engine
        if engine is None:
            return
        with self._store.read() as txn:
            docs = dict(txn.list(COLL))
        for vid, doc in docs.items():
            if doc["status"] == "purging":
                self._finish_purge(engine, vid)
            elif vid not in engine.metadata.volumes:
                log.warning("volume %d was never created in the engine; forgetting it", vid)
                with self._store.write() as txn:
                    txn.delete(COLL, vid)
            elif doc["status"] == "init":
                self.update(vid, status="active")
            if vid in engine.metadata.volumes and doc["status"] != "purging":
                size = engine.metadata.volumes[vid].size
                if size != doc["totalSize"]:
                    self.update(vid, totalSize=size)
        for vid in set(engine.metadata.volumes) - set(docs):
            log.warning("engine volume %d has no configuration; freeing it", vid)
            engine.delete_volume(vid)

    def list(self, statuses: tuple[str, ...] = ("active",)) -> list[Doc]:
        with self._store.read() as txn:
            return [d for _, d in txn.list(COLL) if d["status"] in statuses]

    def provisioned(self) -> int:
        return sum(d["totalSize"] for d in self.list(("active", "init", "deleted")))
