"""The storage work behind drive failures and the drive methods, over the running engine.

Kept apart from :mod:`sealbox.cluster.drives` (which owns states, claims and jobs) so that the
job logic can be read without the storage details, and the storage details without the jobs.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from sealbox.cluster.drive_removal import Load
from sealbox.cluster.drives import Progress, engine_id
from sealbox.cluster.sear import SearService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DriveRole
from sealbox.errors import SealboxError
from sealbox.storage import disk, volume_repair
from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.disk import Disk
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
        # Destroys a drive's authentication key after an erase (EarService.forget_key).
        self.forget_key: Callable[[Doc], None] | None = None

    # --- health -----------------------------------------------------------------------------
    def problem(self, doc: Doc, engine_failed: set[int]) -> str | None:
        """Why an active drive can no longer be trusted, or None if it looks healthy: the
        engine recorded an I/O failure, its file vanished or was replaced, or its header no
        longer reads."""
        live = self._storage.live_drive(doc["driveID"])
        if live is None:
            # Not opened: nothing to judge yet. A drive that did not open at start-up is
            # failed by the start-up, with that reason.
            return None
        if engine_id(doc) in engine_failed and not doc.get("removing"):  # removal fails it
            return "an I/O operation failed; the volume engine stopped using the drive"
        path = doc["path"]
        if not os.path.exists(path):
            return f"the drive file {path} is missing"
        try:
            found = disk.probe(path)
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

    def removal_load(self, leaving: Sequence[Doc], staying: Sequence[Doc]) -> Load:
        """What the block drives ``leaving`` hold that must move to the block drives
        ``staying`` (see :class:`sealbox.cluster.drive_removal.Load`)."""
        engine = self._storage.require_engine()
        node_of = {engine_id(d): int(d["nodeID"]) for d in staying}
        gone = {engine_id(d) for d in leaving}
        free: Counter[int] = Counter({node: 0 for node in node_of.values()})
        for use in engine.drive_usage():
            if use.drive_id in node_of and not use.failed:
                free[node_of[use.drive_id]] += (use.total_bytes - use.used_bytes) // CHUNK_SIZE
        needs: Counter[tuple[frozenset[int], int]] = Counter()
        for drives in volume_repair.copies_on(engine, gone):
            kept = frozenset(node_of[d] for d in drives if d in node_of)
            needs[(kept, sum(d in gone for d in drives))] += 1
        return Load(dict(free), dict(needs))

    def drained(self, doc: Doc) -> bool:
        """True once the engine no longer uses the drive and no chunk names it: a removal
        that got this far (then crashed) only has to record it."""
        engine = self._storage.engine
        if engine is None:
            return False
        eid = engine_id(doc)
        return eid in volume_repair.failed_drives(engine) and \
            not volume_repair.copies_on(engine, {eid})

    # --- erasing ------------------------------------------------------------------------------
    def erase(self, doc: Doc) -> None:
        """Secure erase. A self-encrypting drive replaces its media key (no authentication key
        needed: a drive whose key is lost can be erased too) and gets a new, empty drive
        format; its authentication key is then destroyed (on the key server, for external
        keys). A plain drive with software encryption is crypto-erased (a new data key in both
        header copies); a drive that no longer opens, or a plain unencrypted one, is
        formatted again as a new self-encrypting drive file."""
        with self._store.read() as txn:
            mk_id = self._sear.current_key_id(txn)
        erased = False
        try:
            with Disk.open(doc["path"]) as media:
                if media.sed is not None:
                    media.secure_erase()
                    erased = True
                elif media.drive().encryption is EncryptionMode.SOFTWARE and mk_id is not None:
                    media.drive().crypto_erase(mk_id, self._storage.keys.get(mk_id))
                    erased = True
        except SealboxError as e:
            log.info("drive %d does not open (%s): formatting it anew", doc["driveID"], e.message)
        if not erased:
            self._reformat(doc)
        if self.forget_key is not None:
            self.forget_key(doc)

    def prepare_reuse(self, doc: Doc) -> None:
        """Before a drive that served before is added again: erase it (nothing old is kept)."""
        if Path(doc["path"]).exists():
            self.erase(doc)
        else:
            self._reformat(doc)
            if self.forget_key is not None:
                self.forget_key(doc)

    @staticmethod
    def _reformat(doc: Doc) -> None:
        path = Path(doc["path"])
        path.unlink(missing_ok=True)
        Disk.create(path, int(doc["capacity"])).close()
