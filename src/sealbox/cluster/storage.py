"""The cluster's drives as the storage engine sees them: opened, unlocked, formatted.

At start every active drive is powered on (a self-encrypting drive with locking enabled comes
up locked and is unlocked with its authentication key), its sealbox drive opened and, with
software encryption at rest, unlocked with the current master key; then the volume engine is
opened over them (formatted the first time). If the drives cannot be unlocked (a key is
unavailable), the engine stays closed and volumes are not served;
:attr:`StorageService.unavailable_reason` says why, for NBD clients and the admin. Drives
added later are brought in by :meth:`activate`, the AddDrives hook.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sealbox.cluster import boot_losses
from sealbox.cluster.authkeys import AkInvalid, AkUnavailable, AuthKeys
from sealbox.cluster.drives import drive_of_engine_id, engine_id
from sealbox.cluster.mirror_record import MirrorRecord
from sealbox.cluster.sear import SearService
from sealbox.cluster.topology import DRIVES, DriveRole, DriveStatus
from sealbox.errors import SealboxError
from sealbox.storage.disk import Disk, sed_of
from sealbox.storage.drive import Drive
from sealbox.storage.drive_errors import DriveIOError
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.header import EncryptionMode
from sealbox.storage.keysource import KeySource
from sealbox.storage.sed import SelfEncryptingDrive
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import MetadataNotCurrent, MetadataUnavailable
from sealbox.store.base import ConfigStore, Doc

COLL = "storage"
log = logging.getLogger("sealbox.storage")


class StorageService:
    def __init__(self, store: ConfigStore, sear: SearService, keys: KeySource,
                 aks: AuthKeys, mirrors: MirrorRecord) -> None:
        self._store = store
        self._mirrors = mirrors  # which slice drives hold the current volume metadata
        self._sear = sear
        self.keys = keys
        self._aks = aks
        self._powered: dict[int, Disk] = {}  # powered on, still locked (keys unavailable)
        self._lock = threading.RLock()
        self._drives: dict[int, tuple[Doc, Drive]] = {}
        self._retired: list[Drive] = []  # failed or removed; closed at close (I/O may linger)
        self.engine: StorageEngine | None = None
        self.unavailable_reason = "the cluster has not been created yet"

    # --- drives ---------------------------------------------------------------------------
    def _power_on(self, doc: Doc) -> Disk:
        """Open a drive file: a self-encrypting drive with locking enabled comes up locked."""
        disk = self._powered.pop(doc["driveID"], None)
        return disk if disk is not None else Disk.open(doc["path"])

    def _open(self, doc: Doc, disk: Disk | None = None) -> Drive:
        """The drive inside an unlocked disk, its data readable: encrypted with the master
        key on first use, else unlocked with it. A locked disk is unlocked first with its
        authentication key, fetched once (AddDrives of a drive that still holds one)."""
        disk = disk if disk is not None else self._power_on(doc)
        try:
            outcome = StartOutcome()
            unlock_disks(self._aks, {doc["driveID"]: disk}, [doc], outcome)
            for failed in (outcome.invalid, outcome.unavailable):
                if failed:
                    raise next(iter(failed.values()))
            drive = disk.drive()
            with self._store.read() as txn:
                mk_id = self._sear.current_key_id(txn)
            if drive.encryption is EncryptionMode.SOFTWARE:
                drive.unlock(self.keys)
            elif mk_id is not None:
                drive.enable_software_encryption(mk_id, self.keys.get(mk_id))
        except BaseException:
            disk.close()
            raise
        return drive

    def _spec(self, doc: Doc, drive: Drive) -> DriveSpec:
        role = Role.SLICE if doc["role"] == DriveRole.SLICE else Role.BLOCK
        return DriveSpec(engine_id(doc), doc["nodeID"], role, drive)

    def activate(self, doc: Doc) -> None:
        """AddDrives hook: bring one drive into service (safe to repeat after a crash)."""
        with self._lock:
            if doc["driveID"] in self._drives:
                return
            drive = self._open(doc)
            self._drives[doc["driveID"]] = (doc, drive)
            if self.engine is not None:
                spec = self._spec(doc, drive)
                if spec.drive_id not in self.engine.metadata.drives:
                    self.engine.add_drive(spec)
            elif not self._formatted():
                self._try_open_engine()  # forming the cluster: these drives make the volumes
            # Else the start-up (retrying while the volumes are not served) opens them, with
            # its checks for missing drives, and takes this drive in.

    def live_drive(self, drive_id: int) -> Drive | None:
        """The open drive serving ``drive_id``, if it is in service."""
        entry = self._drives.get(drive_id)
        return None if entry is None else entry[1]

    def retire(self, drive_id: int) -> None:
        """Forget a drive taken out of service (failed or removed); AddDrives opens it anew.
        It is closed only at :meth:`close`: a read may still be using it."""
        with self._lock:
            entry = self._drives.pop(drive_id, None)
            if entry is not None:
                self._retired.append(entry[1])

    # --- the engine -----------------------------------------------------------------------
    def start(self) -> StartOutcome:
        """Power on every active drive, unlock the self-encrypting ones with their
        authentication keys (all fetched at once, each tried once: a drive locks itself out
        after a few wrong keys), open them, then the engine. Drives whose key is invalid are
        left out and reported, for the caller to fail; if keys could not be fetched, the
        drives stay powered on and locked and :attr:`unavailable_reason` says why (call again
        to retry)."""
        outcome = StartOutcome()
        with self._store.read() as txn:
            created = txn.get("cluster", 0) is not None
            active = [d for _, d in txn.list(DRIVES) if d["status"] == DriveStatus.ACTIVE
                      and not d.get("pendingAdd")]
        if not created:
            return outcome
        with self._lock:
            todo = [d for d in active if d["driveID"] not in self._drives]
            try:
                for doc in todo:
                    if doc["driveID"] not in self._powered:
                        self._power_on_or_note(doc, outcome)
                todo = [d for d in todo if d["driveID"] not in outcome.broken]
                self._unlock_powered(todo, outcome)
                if outcome.unavailable:
                    first = next(iter(outcome.unavailable.values()))
                    # NBD clients are told this and NBD has no authentication: the error's
                    # name, not its message (which names key server addresses); the fault
                    # has the details.
                    self.unavailable_reason = (
                        f"{len(outcome.unavailable)} self-encrypting drives are locked: their "
                        f"authentication keys are unavailable ({first.element_name}); see "
                        "ListClusterFaults")
                    log.warning("storage unavailable: %s (%s)", self.unavailable_reason,
                                first.message)
                    return outcome
                for doc in todo:
                    if doc["driveID"] in outcome.invalid:
                        continue
                    disk = self._powered.pop(doc["driveID"])
                    if _header_reads(doc, disk, outcome):
                        self._drives[doc["driveID"]] = (doc, self._open(doc, disk))
            except SealboxError as e:
                self.unavailable_reason = (
                    f"drives are locked: {e.element_name}; see ListClusterFaults")
                log.warning("storage unavailable: %s", e.message)
                outcome.error = e
                return outcome
            if self.engine is None:
                self._try_open_engine(outcome, active)
            if self.engine is None and outcome.broken:
                lowest = min(outcome.broken)
                self.unavailable_reason += (
                    f"; drive(s) {sorted(outcome.broken)} could not be opened (drive {lowest}: "
                    f"{outcome.broken[lowest].message})")
        return outcome

    def _power_on_or_note(self, doc: Doc, outcome: StartOutcome) -> None:
        """Power a drive on for :meth:`start`, or note it in ``outcome.broken`` if its file is
        missing or does not read: a drive that died while the cluster was down is failed like
        one that dies in service, not a reason to serve nothing."""
        try:
            self._powered[doc["driveID"]] = Disk.open(doc["path"])
        except (SealboxError, OSError) as e:
            outcome.broken[doc["driveID"]] = _as_error(doc, e)

    def _unlock_powered(self, todo: list[Doc], outcome: StartOutcome) -> None:
        unlock_disks(self._aks, self._powered, todo, outcome)
        for drive_id in outcome.invalid:
            disk = self._powered.pop(drive_id, None)
            if disk is not None:
                disk.close()

    def sed(self, drive_id: int) -> SelfEncryptingDrive | None:
        """The self-encrypting drive under ``drive_id``, if it is in service."""
        entry = self._drives.get(drive_id)
        return None if entry is None else sed_of(entry[1])

    def powered_sed(self, drive_id: int) -> SelfEncryptingDrive | None:
        """The self-encrypting drive under ``drive_id`` while it is powered on: in service, or
        waiting (locked) for its authentication key. Read without the lock, which a start
        holds while it fetches keys: a listing must not wait on a key server."""
        if drive_id in self._drives:
            return self.sed(drive_id)
        disk = self._powered.get(drive_id)
        return None if disk is None else disk.sed

    def _formatted(self) -> bool:
        with self._store.read() as txn:
            return bool((txn.get(COLL, 0) or {}).get("formatted"))

    def _try_open_engine(self, outcome: StartOutcome | None = None,
                         active: Sequence[Doc] = ()) -> None:
        """Open the volume engine over the open drives, if they suffice. Drives of ``active``
        that did not open at start-up (``outcome.broken``) are failed in the engine before it
        is published, and listed in ``outcome.failed``, only if that loses nothing
        (:mod:`sealbox.cluster.boot_losses`); otherwise the engine is not opened."""
        broken = {d["driveID"]: d for d in active
                  if outcome is not None and d["driveID"] in outcome.broken}
        specs = [self._spec(doc, drive) for doc, drive in self._drives.values()]
        formatted = self._formatted()
        try:
            witness = self._mirrors.witness()
        except (OSError, ValueError) as e:
            self.unavailable_reason = f"the record of the metadata slice drives is unreadable: {e}"
            log.error("volume metadata: %s", self.unavailable_reason)
            return
        # Slice drives left out: broken, or locked with an invalid key (failed by the caller).
        left_out = set(broken) | set(outcome.invalid if outcome is not None else ())
        slices = [d["driveID"] for d in active
                  if d["driveID"] in left_out and d["role"] == DriveRole.SLICE]
        if witness.recorded is None and slices:
            # Not even opened: opening rewrites the metadata found onto the slice drives
            # that are there, and records them as its mirrors.
            self.unavailable_reason = boot_losses.unproven(slices)
            return
        # Formatting needs two nodes for each kind of drive; reopening needs only what holds
        # the metadata and the data (a degraded cluster still serves its volumes).
        if not _enough(specs, 1 if formatted else 2):
            self.unavailable_reason = (
                "too few slice and block drives are open to serve the volumes" if formatted
                else "volumes need active slice and block drives on at least two nodes; add "
                "drives with AddDrives")
            return
        key = self._sear.integrity_key(self.keys)
        try:
            engine = StorageEngine(specs, integrity_key=key, create=False, witness=witness)
        except MetadataUnavailable as e:
            if formatted or broken:  # never format over drives that are only missing
                self.unavailable_reason = _metadata_reason(e)
                log.error("volume metadata unavailable: %s", self.unavailable_reason)
                return
            # Never formatted (a record left by another cluster is no reason not to): the
            # engine formats only drives that hold no metadata at all.
            try:
                engine = StorageEngine(specs, integrity_key=key, create=True, witness=witness)
            except SealboxError as e:  # e.g. MetadataExists: never format over metadata
                self.unavailable_reason = f"the volumes could not be formatted: {e.message}"
                log.error("%s", self.unavailable_reason)
                return
        if not formatted:  # also after a crash between formatting and this record
            with self._store.write() as txn:
                txn.put(COLL, 0, {"formatted": True})
        try:
            reason = self._settle_broken(engine, broken, active, outcome)
        except Exception as e:  # e.g. an I/O error recording a failure: not served, retried
            log.exception("opening the volumes failed")
            reason = f"opening the volumes failed: {e}"
        if reason is not None:  # the start-up logs it and raises volumesOffline
            engine.close()
            self.unavailable_reason = reason
            return
        self.engine = engine
        self.unavailable_reason = ""
        for doc, drive in list(self._drives.values()):  # added (AddDrives) while not served
            spec = self._spec(doc, drive)
            if spec.drive_id not in engine.metadata.drives:
                try:
                    engine.add_drive(spec)
                except Exception:  # the volumes are served; this drive is not used yet
                    log.exception("drive %d could not be taken in", doc["driveID"])

    @staticmethod
    def _settle_broken(engine: StorageEngine, broken: Mapping[int, Doc], active: Sequence[Doc],
                       outcome: StartOutcome | None) -> str | None:
        """Fail the drives that did not open in ``engine`` if that loses nothing; else why
        the volumes cannot be served."""
        if not broken:
            return None
        reason = boot_losses.unsafe_reason(engine, broken, active)
        if reason is not None:
            return reason
        boot_losses.fail_in_engine(engine, broken)
        if outcome is not None:
            outcome.failed = sorted(broken)
        return None

    def exclusive(self) -> threading.RLock:
        """Held, no drive is opened or added (a rekey's commit holds it)."""
        return self._lock

    def drives(self) -> list[tuple[Doc, Drive]]:
        """The open drives (for rekey: every one holds a wrapped data key)."""
        with self._lock:
            return list(self._drives.values())

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
            for disk in self._powered.values():
                disk.close()
            self._powered.clear()
            for retired in self._retired:
                retired.close()
            self._retired.clear()


@dataclass
class StartOutcome:
    """What :meth:`StorageService.start` could not do, by drive."""

    invalid: dict[int, SealboxError] = field(default_factory=dict)
    unavailable: dict[int, AkUnavailable] = field(default_factory=dict)
    # Files missing or unreadable (not a key problem). Failed (``failed``) only if the volumes
    # open without them and nothing is lost (see sealbox.cluster.boot_losses).
    broken: dict[int, SealboxError] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)  # of ``broken``: failed in the engine
    error: SealboxError | None = None


def _header_reads(doc: Doc, disk: Disk, outcome: StartOutcome) -> bool:
    """True if the sealbox drive on an unlocked disk opens; else the disk is closed and the
    drive noted in ``outcome.broken`` (a corrupt or truncated header is the drive's fault,
    not a locked one)."""
    try:
        disk.drive()
    except (SealboxError, OSError) as e:
        disk.close()
        outcome.broken[doc["driveID"]] = _as_error(doc, e)
        return False
    return True


def _as_error(doc: Doc, error: SealboxError | OSError) -> SealboxError:
    if isinstance(error, SealboxError):
        return error
    return DriveIOError(f"{doc['path']}: {error.strerror or error}")


def unlock_disks(aks: AuthKeys, disks: Mapping[int, Disk], docs: Sequence[Doc],
                 outcome: StartOutcome) -> None:
    """Unlock the locked ones of ``disks`` (powered on, by drive ID; ``docs`` are their drive
    documents) with their authentication keys, all fetched at once and each tried once: a
    drive locks itself out after a few wrong keys, so the cluster never guesses. Drives whose
    key is missing, refused by the key store or by the drive go to ``outcome.invalid``, those
    whose key could not be fetched to ``outcome.unavailable``; every disk stays powered on
    (closing is the caller's). The boot path (:meth:`StorageService.start`) and
    ``bench/boot.py`` share this one function, so the bench times what boot does."""
    locked = {d["driveID"]: d for d in docs if disks[d["driveID"]].locked}
    records = {i: d["ak"] for i, d in locked.items() if d.get("ak") is not None}
    for drive_id in locked.keys() - records.keys():
        outcome.invalid[drive_id] = AkInvalid(
            f"drive {drive_id} is locked and the cluster holds no authentication key for it")
    if not records:
        return
    fetched = aks.fetch_all(records)
    outcome.unavailable.update(fetched.unavailable)
    outcome.invalid.update(fetched.invalid)
    for drive_id, ak in fetched.keys.items():
        try:
            disks[drive_id].unlock(ak)  # once: never guess
        except SealboxError as e:
            outcome.invalid[drive_id] = AkInvalid(
                f"drive {drive_id} refused its authentication key ({e.message})")


def _metadata_reason(error: MetadataUnavailable) -> str:
    if not isinstance(error, MetadataNotCurrent):
        return error.message
    names = ", ".join(str(drive_of_engine_id(i)) for i in error.drive_ids)
    return (f"the slice drive(s) holding the current volume metadata ({names}) did not open "
            "or hold no readable copy; a copy on another slice drive could be an old one")


class StorageUnavailable(SealboxError):
    element_name = "xVolumesUnavailable"


def _enough(specs: Sequence[DriveSpec], nodes: int) -> bool:
    slice_nodes = {s.node_id for s in specs if s.role is Role.SLICE}
    block_nodes = {s.node_id for s in specs if s.role is Role.BLOCK}
    return len(slice_nodes) >= nodes and len(block_nodes) >= nodes

