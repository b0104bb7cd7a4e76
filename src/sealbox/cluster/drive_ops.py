"""The storage work behind drive failures and the drive methods, over the running engine.

Kept apart from :mod:`sealbox.cluster.drives` (which owns states, claims and jobs) so that the
job logic can be read without the storage details, and the storage details without the jobs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sealbox.cluster.drives import Progress, engine_id
from sealbox.cluster.sear import SearService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DriveRole
from sealbox.errors import SealboxError
from sealbox.storage import volume_repair
from sealbox.storage.drive import Drive
from sealbox.storage.header import EncryptionMode
from sealbox.storage.volume_errors import NotEnoughSpace
from sealbox.storage.volume_repair import RepairReport
from sealbox.store.base import ConfigStore, Doc

log = logging.getLogger("sealbox.drives")


class DriveOps:
    def __init__(self, store: ConfigStore, storage: StorageService, sear: SearService) -> None:
        self._store = store
        self._storage = storage
        self._sear = sear

    # --- health -----------------------------------------------------------------------------
    def problem(self, doc: Doc, engine_failed: set[int]) -> str | None:
        """Why an active drive can no longer be trusted, or None if it looks healthy: the
        engine recorded an I/O failure, its file vanished or was replaced, or its header no
        longer reads."""
        if engine_id(doc) in engine_failed and not doc.get("removing"):  # removal fails it
            return "an I/O operation failed; the volume engine stopped using the drive"
        live = self._storage.live_drive(doc["driveID"])
        if live is None:
            return None  # not opened (volumes unavailable): nothing to judge yet
        path = doc["path"]
        if not os.path.exists(path):
            return f"the drive file {path} is missing"
        try:
            with Drive.open(path) as probe:
                found = probe.uuid
        except SealboxError as e:
            return f"the drive header is unreadable: {e.message}"
        except OSError as e:
            return f"the drive cannot be read: {e.strerror or e}"
        if found != live.uuid:
            return f"the drive file {path} was replaced by another drive ({found})"
        return None

    @staticmethod
    def file_present(doc: Doc) -> bool:
        return Path(doc["path"]).exists()

    # --- failure and re-protection ----------------------------------------------------------
    def fail_out(self, doc: Doc) -> None:
        """Stop using a failed drive at once, durably in the volume metadata."""
        engine = self._storage.engine
        if engine is not None:
            eid = engine_id(doc)
            if doc["role"] == DriveRole.BLOCK:
                engine.fail_drive(eid)
            else:
                try:
                    volume_repair.fail_slice_drive(engine, eid)
                except SealboxError as e:
                    log.error("slice drive %d on node %d: %s", doc["driveID"], doc["nodeID"],
                              e.message)
        self._storage.retire(doc["driveID"])

    def resync(self, doc: Doc, progress: Progress) -> RepairReport:
        """Give every chunk (or the metadata) the failed drive held its second copy again."""
        engine = self._storage.require_engine()
        eid = engine_id(doc)
        if doc["role"] == DriveRole.BLOCK:
            return volume_repair.rereplicate(engine, eid, progress)
        volume_repair.fail_slice_drive(engine, eid)
        progress(1, 1)
        return RepairReport()

    # --- RemoveDrives -------------------------------------------------------------------------
    def move_off(self, doc: Doc, progress: Progress) -> None:
        engine = self._storage.require_engine()
        eid = engine_id(doc)
        if doc["role"] == DriveRole.BLOCK:
            report = volume_repair.move_off(engine, eid, progress)
            if report.lost:
                raise NotEnoughSpace(
                    f"Drive {doc['driveID']} on node {doc['nodeID']} cannot be removed: "
                    f"{len(report.lost)} chunks found no room on another drive (add block "
                    "drives with AddDrives and try again); the drive stays active.")
        else:
            volume_repair.remove_slice_drive(engine, eid)
            progress(1, 1)
        self._storage.retire(doc["driveID"])

    # --- erasing ------------------------------------------------------------------------------
    def erase(self, doc: Doc) -> None:
        """Crypto-erase: destroy the drive's wrapped key in both header copies and start over
        with a new one. A drive whose header no longer reads (or, without encryption at rest,
        any drive) is formatted again instead: its file is replaced by a new, empty one."""
        with self._store.read() as txn:
            mk_id = self._sear.current_key_id(txn)
        try:
            drive = Drive.open(doc["path"])
        except SealboxError:
            self._reformat(doc)
            return
        with drive:
            if drive.encryption is EncryptionMode.SOFTWARE and mk_id is not None:
                drive.crypto_erase(mk_id, self._storage.keys.get(mk_id))
                return
        self._reformat(doc)

    def prepare_reuse(self, doc: Doc) -> None:
        """Before a drive that served before is added again: erase it (nothing old is kept)."""
        if Path(doc["path"]).exists():
            self.erase(doc)
        else:
            self._reformat(doc)

    @staticmethod
    def _reformat(doc: Doc) -> None:
        path = Path(doc["path"])
        path.unlink(missing_ok=True)
        Drive.create(path, int(doc["capacity"])).close()
