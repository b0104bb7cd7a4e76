"""Drive lifecycle: ``AddDrives``, ``RemoveDrives`` and ``SecureEraseDrives`` as async jobs.

Each method claims its drives in the same transaction that records its job, so two concurrent
calls cannot take the same drive; the job then does the storage work through
:class:`DriveActions` and is safe to run again after a crash (``kill -9``). Element's result
types: ``DriveAdd``, ``DriveRemoval`` and (sealbox's name) ``DriveErase``.

States (``status`` in the configuration store, shown by ListDrives):

* ``available`` → AddDrives → ``active``. A drive that was in service before (``reuse``) is
  erased first and enters the volume engine under a new generation (see :func:`engine_id`).
* ``active`` → RemoveDrives → ``removing`` (its data is copied off while it still serves as
  one of the two copies) → ``available``. While removing, the stored status stays ``active``
  with ``removing: true``, so that a restart serves the drive again until its data has moved.
* ``available`` → SecureEraseDrives → ``erasing`` → ``available``.
* ``failed``: see :mod:`sealbox.cluster.drive_health`. RemoveDrives on a failed drive whose
  data has been re-protected forgets it (a pulled disk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.jobs import JobContext, JobService
from sealbox.cluster.topology import DRIVES, NODES, DriveRole, DriveStatus, NodeState
from sealbox.errors import DriveNotFound, InvalidParameter, NotPermitted
from sealbox.store.base import ConfigStore, Doc, Txn

DRIVE_ADD = "DriveAdd"
DRIVE_REMOVAL = "DriveRemoval"
DRIVE_ERASE = "DriveErase"
_TYPES = {"slice": DriveRole.SLICE, "volume": DriveRole.SLICE, "block": DriveRole.BLOCK}
_GENERATION_SHIFT = 16  # drive ids stay below 65536; each re-add gets a fresh engine id


def engine_id(doc: Doc) -> int:
    """The id the volume engine knows this drive by: the drive ID for its first time in
    service, a new one each time it comes back (the engine never forgets a failed id)."""
    return int(doc["driveID"]) + (int(doc.get("generation", 0)) << _GENERATION_SHIFT)


def drive_of_engine_id(eid: int) -> int:
    return eid & ((1 << _GENERATION_SHIFT) - 1)


def shown_status(doc: Doc) -> str:
    """The status ListDrives shows (``removing`` is kept as a flag; see the module doc)."""
    return str(DriveStatus.REMOVING) if doc.get("removing") else str(doc["status"])


@dataclass(frozen=True)
class NewDrive:
    drive_id: int
    type: str | None = None


# Called for each drive as the add job brings it into service (the storage engine hooks here).
DriveActivator = Callable[[Doc], None]
Progress = Callable[[int, int], None]


class DriveActions(Protocol):
    """The storage work behind the jobs (implemented by :class:`drive_ops.DriveOps`)."""

    def prepare_reuse(self, doc: Doc) -> None: ...
    def move_off(self, doc: Doc, progress: Progress) -> None: ...
    def erase(self, doc: Doc) -> None: ...


class DriveService:
    def __init__(self, store: ConfigStore, jobs: JobService, faults: FaultService) -> None:
        self._store = store
        self._jobs = jobs
        self._faults = faults
        self.activators: list[DriveActivator] = []
        self.after_add: list[Callable[[], None]] = []
        self.actions: DriveActions | None = None
        jobs.register(DRIVE_ADD, self._run_add)
        jobs.register(DRIVE_REMOVAL, self._run_remove)
        jobs.register(DRIVE_ERASE, self._run_erase)

    # --- AddDrives ------------------------------------------------------------------------
    def claim_for_add(self, txn: Txn, new: Sequence[NewDrive]) -> int:
        ids = _distinct([d.drive_id for d in new])
        for item in new:
            doc = _get(txn, item.drive_id)
            _require(doc, DriveStatus.AVAILABLE, "added")
            _check_type(item, doc)
            doc["status"] = str(DriveStatus.ACTIVE)
            doc["pendingAdd"] = True
            txn.put(DRIVES, item.drive_id, doc)
        return self._jobs.create(txn, DRIVE_ADD, {"driveIDs": ids})

    def _run_add(self, ctx: JobContext) -> Doc:
        ids: list[int] = ctx.params["driveIDs"]
        for n, drive_id in enumerate(ids):
            doc = self._doc(drive_id)
            if doc is None or not doc.get("pendingAdd"):
                continue
            if doc.get("reuse"):
                self._require_actions().prepare_reuse(doc)  # erase: nothing old is kept
                doc = self._update(drive_id, generation=int(doc.get("generation", 0)) + 1,
                                   reuse=False)
            for activate in self.activators:
                activate(doc)
            self._update(drive_id, pendingAdd=None, failureDetail="")
            ctx.progress(drivesAdded=n + 1, drivesTotal=len(ids))
        self.refresh_available_fault()
        for hook in self.after_add:
            hook()
        return {"drives": [{"driveID": i, "status": "active"} for i in ids]}

    # --- RemoveDrives ---------------------------------------------------------------------
    def claim_for_remove(self, txn: Txn, ids: Sequence[int]) -> int:
        ids = _distinct(ids)
        docs = [_get(txn, i) for i in ids]
        for doc in docs:
            if doc["status"] == DriveStatus.FAILED:
                if not doc.get("resynced"):
                    raise NotPermitted(
                        f"Drive {doc['driveID']} failed and its data is still being "
                        "re-protected; remove it when ListDrives no longer shows it failed "
                        "with blocksDegraded open (see ListClusterFaults).")
                continue
            if doc["status"] != DriveStatus.ACTIVE or doc.get("removing") or \
                    doc.get("pendingAdd"):
                raise NotPermitted(
                    f"Drive {doc['driveID']} is {shown_status(doc)}; only active or failed "
                    "drives can be removed (see ListDrives).")
        for doc in docs:
            if doc["status"] == DriveStatus.FAILED:
                txn.delete(DRIVES, doc["driveID"])  # a pulled disk: its data is elsewhere
                self._faults.resolve("driveFailed", f"drive:{doc['driveID']}", txn)
            else:
                doc["removing"] = True
                txn.put(DRIVES, doc["driveID"], doc)
        return self._jobs.create(txn, DRIVE_REMOVAL, {"driveIDs": ids})

    def _run_remove(self, ctx: JobContext) -> Doc:
        ids: list[int] = ctx.params["driveIDs"]
        for n, drive_id in enumerate(ids):
            doc = self._doc(drive_id)
            if doc is None or not doc.get("removing"):
                continue

            def progress(done: int, total: int, n: int = n) -> None:
                ctx.progress(drivesRemoved=n, drivesTotal=len(ids), chunksMoved=done,
                             chunksTotal=total)

            self._require_actions().move_off(doc, progress)
            with self._store.write() as txn:
                cur = txn.get(DRIVES, drive_id)
                if cur is not None and cur.get("removing"):  # not failed meanwhile
                    cur.pop("removing")
                    cur.update(status=str(DriveStatus.AVAILABLE), reuse=True)
                    txn.put(DRIVES, drive_id, cur)
            ctx.progress(drivesRemoved=n + 1, drivesTotal=len(ids))
        self.refresh_available_fault()
        return {"drives": [{"driveID": i, "status": "available"} for i in ids]}

    # --- SecureEraseDrives ----------------------------------------------------------------
    def claim_for_erase(self, txn: Txn, ids: Sequence[int]) -> int:
        ids = _distinct(ids)
        for drive_id in ids:
            doc = _get(txn, drive_id)
            _require(doc, DriveStatus.AVAILABLE, "securely erased")
            doc["status"] = str(DriveStatus.ERASING)
            txn.put(DRIVES, drive_id, doc)
        return self._jobs.create(txn, DRIVE_ERASE, {"driveIDs": ids})

    def _run_erase(self, ctx: JobContext) -> Doc:
        ids: list[int] = ctx.params["driveIDs"]
        for n, drive_id in enumerate(ids):
            doc = self._doc(drive_id)
            if doc is None or doc["status"] != DriveStatus.ERASING:
                continue
            self._require_actions().erase(doc)
            self._update(drive_id, status=str(DriveStatus.AVAILABLE), reuse=True)
            ctx.progress(drivesErased=n + 1, drivesTotal=len(ids))
        return {"drives": [{"driveID": i, "status": "available"} for i in ids]}

    # --- shared ---------------------------------------------------------------------------
    def _require_actions(self) -> DriveActions:
        if self.actions is None:
            raise NotPermitted("Volumes are not available, so drives cannot be changed now.")
        return self.actions

    def _doc(self, drive_id: int) -> Doc | None:
        with self._store.read() as txn:
            return txn.get(DRIVES, drive_id)

    def _update(self, drive_id: int, **changes: object) -> Doc:
        """Apply ``changes`` to the drive's record (a None value deletes the field)."""
        with self._store.write() as txn:
            doc = _get(txn, drive_id)
            for key, value in changes.items():
                if value is None:
                    doc.pop(key, None)
                else:
                    doc[key] = value
            txn.put(DRIVES, drive_id, doc)
        return doc

    def refresh_available_fault(self, txn: Txn | None = None) -> None:
        """Raise ``driveAvailable`` while active nodes have drives not yet added."""
        if txn is None:
            with self._store.write() as t:
                self.refresh_available_fault(t)
            return
        active = {d["nodeID"] for _, d in txn.list(NODES) if d["state"] == NodeState.ACTIVE}
        waiting = [
            d["driveID"] for _, d in txn.list(DRIVES)
            if d["status"] == DriveStatus.AVAILABLE and d["nodeID"] in active
        ]
        if waiting:
            self._faults.raise_fault(Fault(
                "driveAvailable", Severity.WARNING, FaultType.DRIVE,
                f"Drives {waiting} are available but not in use; add them with AddDrives.",
                subject="drives", drive_ids=waiting,
            ), txn)
        else:
            self._faults.resolve("driveAvailable", "drives", txn)


def _distinct(ids: Sequence[int]) -> list[int]:
    if not ids:
        raise InvalidParameter("Invalid parameter 'drives': list at least one drive.")
    if len(set(ids)) != len(ids):
        raise InvalidParameter("Invalid parameter 'drives': a drive is listed twice.")
    return list(ids)


def _require(doc: Doc, status: DriveStatus, verb: str) -> None:
    if doc["status"] != status or doc.get("removing"):
        raise NotPermitted(
            f"Drive {doc['driveID']} is {shown_status(doc)}; only {status} drives can be "
            f"{verb} (see ListDrives).")


def _get(txn: Txn, drive_id: int) -> Doc:
    doc = txn.get(DRIVES, drive_id)
    if doc is None:
        raise DriveNotFound(f"DriveID {drive_id} does not exist.")
    return doc


def _check_type(item: NewDrive, doc: Doc) -> None:
    if item.type is None:
        return
    role = _TYPES.get(item.type)
    if role is None:
        raise InvalidParameter(
            f"Invalid parameter 'drives': type {item.type!r} of drive {item.drive_id} is not "
            "one of slice, block, volume."
        )
    if role != doc["role"]:
        raise InvalidParameter(
            f"Invalid parameter 'drives': drive {item.drive_id} is a {doc['role']} drive, "
            f"not {item.type}."
        )
