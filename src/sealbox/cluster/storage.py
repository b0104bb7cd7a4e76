"""The cluster's drives as the storage engine sees them: opened, unlocked, formatted.

At start every active drive is opened and, with software encryption at rest, unlocked with
the current master key; then the volume engine is opened over them (formatted the first time).
If the drives cannot be unlocked (the key is unavailable), the engine stays closed and volumes
are not served; :attr:`StorageService.unavailable_reason` says why, for NBD clients and the
admin. Drives added later are brought in by :meth:`activate`, the AddDrives hook.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sealbox.cluster.sear import SearService
from sealbox.cluster.topology import DRIVES, DriveRole, DriveStatus
from sealbox.errors import SealboxError
from sealbox.storage.drive import Drive
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.header import EncryptionMode
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import MetadataUnavailable, NotEnoughSpace
from sealbox.store.base import ConfigStore, Doc

COLL = "storage"
log = logging.getLogger("sealbox.storage")


class StorageService:
    def __init__(self, store: ConfigStore, sear: SearService) -> None:
        self._store = store
        self._sear = sear
        self._lock = threading.RLock()
        self._drives: dict[int, tuple[Doc, Drive]] = {}
        self.engine: StorageEngine | None = None
        self.unavailable_reason = "the cluster has not been created yet"

    # --- drives ---------------------------------------------------------------------------
    def _open(self, doc: Doc) -> Drive:
        """Open a drive and make its data readable: encrypt it on first use, else unlock."""
        drive = Drive.open(doc["path"])
        try:
            with self._store.read() as txn:
                mk_id = self._sear.current_key_id(txn)
            if drive.encryption is EncryptionMode.SOFTWARE:
                drive.unlock(self._sear.key_source())
            elif mk_id is not None:
                drive.enable_software_encryption(mk_id, self._sear.internal.get(mk_id))
        except BaseException:
            drive.close()
            raise
        return drive

    def _spec(self, doc: Doc, drive: Drive) -> DriveSpec:
        role = Role.SLICE if doc["role"] == DriveRole.SLICE else Role.BLOCK
        return DriveSpec(doc["driveID"], doc["nodeID"], role, drive)

    def activate(self, doc: Doc) -> None:
        """AddDrives hook: bring one drive into service (safe to repeat after a crash)."""
        with self._lock:
            if doc["driveID"] in self._drives:
                return
            drive = self._open(doc)
            self._drives[doc["driveID"]] = (doc, drive)
            if self.engine is not None:
                if doc["driveID"] not in self.engine.metadata.drives:
                    self.engine.add_drive(self._spec(doc, drive))
            else:
                self._try_open_engine()

    # --- the engine -----------------------------------------------------------------------
    def start(self) -> None:
        with self._store.read() as txn:
            created = txn.get("cluster", 0) is not None
            active = [d for _, d in txn.list(DRIVES) if d["status"] == DriveStatus.ACTIVE
                      and not d.get("pendingAdd")]
        if not created:
            return
        with self._lock:
            try:
                for doc in active:
                    if doc["driveID"] not in self._drives:
                        self._drives[doc["driveID"]] = (doc, self._open(doc))
            except SealboxError as e:
                self.unavailable_reason = f"drives are locked: {e.message}"
                log.warning("storage unavailable: %s", e.message)
                return
            self._try_open_engine()

    def _try_open_engine(self) -> None:
        specs = [self._spec(doc, drive) for doc, drive in self._drives.values()]
        if not _enough(specs):
            self.unavailable_reason = (
                "volumes need active slice and block drives on at least two nodes; add drives "
                "with AddDrives"
            )
            return
        key = self._sear.integrity_key(self._sear.key_source())
        with self._store.read() as txn:
            formatted = bool((txn.get(COLL, 0) or {}).get("formatted"))
        try:
            self.engine = StorageEngine(specs, integrity_key=key, create=False)
        except MetadataUnavailable:
            if formatted:
                self.unavailable_reason = "no slice drive holds readable volume metadata"
                log.error("volume metadata unavailable on every slice drive")
                return
            self.engine = StorageEngine(specs, integrity_key=key, create=True)
            with self._store.write() as txn:
                txn.put(COLL, 0, {"formatted": True})
        self.unavailable_reason = ""

    def require_engine(self) -> StorageEngine:
        if self.engine is None:
            raise StorageUnavailable(f"Volumes are not available: {self.unavailable_reason}.")
        return self.engine

    def close(self) -> None:
        with self._lock:
            if self.engine is not None:
                self.engine.close()
                self.engine = None
            for _, drive in self._drives.values():
                drive.close()
            self._drives.clear()


class StorageUnavailable(SealboxError):
    element_name = "xVolumesUnavailable"


def _enough(specs: Sequence[DriveSpec]) -> bool:
    slice_nodes = {s.node_id for s in specs if s.role is Role.SLICE}
    block_nodes = {s.node_id for s in specs if s.role is Role.BLOCK}
    return len(slice_nodes) >= 2 and len(block_nodes) >= 2


__all__ = ["NotEnoughSpace", "StorageService", "StorageUnavailable"]
