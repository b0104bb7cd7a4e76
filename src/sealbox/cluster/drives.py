"""Drive lifecycle: ``AddDrives``, ``RemoveDrives`` and ``SecureEraseDrives`` as async jobs.

Each method claims its drives in the same transaction that records its job, so two concurrent
calls cannot take the same drive; only drives of nodes that are cluster members can be claimed
(Element lists no others); the job then does the storage work through
:class:`DriveActions` and is safe to run again after a crash (``kill -9``). Element's result
types: ``DriveAdd``, ``DriveRemoval`` and (sealbox's name) ``DriveErase``.

States (``status`` in the configuration store, shown by ListDrives):

* ``available`` → AddDrives → ``active``. A drive that was in service before (``reuse``) is
  erased first and enters the volume engine under a new generation (see :func:`engine_id`).
* ``active`` → RemoveDrives → ``removing`` (its data is copied off while it still serves as
  one of the two copies) → ``available``. While removing, the stored status stays ``active``
  with ``removing: true``, so that a restart serves the drive again until its data has moved.
  The whole request is refused up front if the drives leaving together would leave some data
  or the volume metadata without two copies on two nodes (:mod:`drive_removal`). A removal
  that fails part-way puts the drives it has not drained back to ``active`` (a drive that
  failed meanwhile is ``failed``), and the job's result carries the error. ``removing`` never
  outlives its job: a job cut short by a restart resumes, and a ``removing`` flag no running
  job covers (left by an older sealbox) is cleared at start.
* ``available`` → SecureEraseDrives → ``erasing`` → ``available``.
* ``failed``: see :mod:`sealbox.cluster.drive_health`. RemoveDrives on a failed drive whose
  data has been re-protected forgets it (a pulled disk).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sealbox.cluster import drive_removal
from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.jobs import COLL as JOBS
from sealbox.cluster.jobs import JobContext, JobService, wait_or_stop
from sealbox.cluster.topology import DRIVES, NODES, DriveRole, DriveStatus, NodeState
from sealbox.errors import (
    DriveNotFound,
    InternalError,
    InvalidParameter,
    NotPermitted,
    SealboxError,
)
from sealbox.store.base import ConfigStore, Doc, Txn

log = logging.getLogger("sealbox.drives")

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


class DriveActions(drive_removal.LoadSource, Protocol):
    """The storage work behind the jobs (implemented by :class:`drive_ops.DriveOps`)."""

    def prepare_reuse(self, doc: Doc) -> None: ...
    def move_off(self, doc: Doc, progress: Progress) -> None: ...
    def drained(self, doc: Doc) -> bool: ...
    def erase(self, doc: Doc) -> None: ...


class DriveService:
    def __init__(self, store: ConfigStore, jobs: JobService, faults: FaultService) -> None:
        self._store = store
        self._jobs = jobs
        self._faults = faults
        self.activators: list[DriveActivator] = []
        self.after_add: list[Callable[[], None]] = []
        self.actions: DriveActions | None = None
        # Test-only: a pause after each batch a removal moves, so crash tests can kill it
        # midway (never set in production).
        self._test_removal_delay = float(os.environ.get("SEALBOX_TEST_REMOVAL_STEP_DELAY", "0"))
        # Set once the drives are unlocked (the cluster wires the unlocker's event): a removal
        # resumed at start waits for it, as a rekey does. Without the engine it could not tell
        # a drive it had fully drained before a crash from one it had not, and would put a
        # drained drive back in service. ``closing`` ends the wait when sealbox stops.
        self.unlocked: threading.Event | None = None
        self.closing = threading.Event()
        jobs.register(DRIVE_ADD, self._run_add)
        jobs.register(DRIVE_REMOVAL, self._run_remove)
        jobs.register(DRIVE_ERASE, self._run_erase)
        # Here, before the job service resumes the jobs of the last run: it tells which
        # removals will resume, and every other ``removing`` flag is left over.
        self.clear_stale_removals()

    # --- AddDrives ------------------------------------------------------------------------
    def claim_for_add(self, txn: Txn, new: Sequence[NewDrive]) -> int:
        ids = _distinct([d.drive_id for d in new])
        for item in new:
            doc = _member_drive(txn, item.drive_id)
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
        docs = [_member_drive(txn, i) for i in ids]
        for doc in docs:
            _require_removable(doc)
        leaving = {d["driveID"] for d in docs if d["status"] != DriveStatus.FAILED}
        if leaving:  # forgetting failed drives moves nothing: their data is elsewhere already
            every = [d for _, d in txn.list(DRIVES)]
            drive_removal.check(every, leaving, self._require_actions())
        for doc in docs:
            if doc["status"] == DriveStatus.FAILED:
                txn.delete(DRIVES, doc["driveID"])  # a pulled disk: its data is elsewhere
                self._faults.resolve("driveFailed", f"drive:{doc['driveID']}", txn)
            else:
                doc["removing"] = True
                txn.put(DRIVES, doc["driveID"], doc)
        return self._jobs.create(txn, DRIVE_REMOVAL, {"driveIDs": ids})

    def _run_remove(self, ctx: JobContext) -> Doc:
        """Drain the drives one by one; if that fails, put back the ones not drained. The
        error is recorded in the job's details *before* the drives are put back, so that a
        restart in between finishes the roll-back and reports the same error, rather than
        resuming a removal the client was told nothing about."""
        ids: list[int] = ctx.params["driveIDs"]
        if self.unlocked is not None:
            wait_or_stop(self.unlocked, self.closing, "the removal waits for the drives")
        failure: Doc | None = ctx.details.get("failure")
        if failure is not None:
            self._put_back(ids)
            raise _replay(failure)
        try:
            self._drain_all(ctx, ids)
        except Exception as e:
            error = e if isinstance(e, SealboxError) else InternalError(
                "the job failed; see the sealbox log")
            ctx.progress(failure=error.to_element())
            self._put_back(ids)
            raise
        self.refresh_available_fault()
        return {"drives": self._outcome(ids)}

    def _drain_all(self, ctx: JobContext, ids: list[int]) -> None:
        for n, drive_id in enumerate(ids):
            doc = self._doc(drive_id)
            if doc is None or not doc.get("removing"):
                continue  # forgotten (it had failed), or failed meanwhile

            def progress(done: int, total: int, n: int = n) -> None:
                ctx.progress(drivesRemoved=n, drivesTotal=len(ids), chunksMoved=done,
                             chunksTotal=total)
                if self._test_removal_delay:
                    time.sleep(self._test_removal_delay)

            actions = self._require_actions()
            if not actions.drained(doc):
                self._check_rest(ids, actions)  # drives may have failed since the claim
                actions.move_off(doc, progress)
            self._mark_removed(drive_id)
            ctx.progress(drivesRemoved=n + 1, drivesTotal=len(ids))

    def _check_rest(self, ids: list[int], actions: DriveActions) -> None:
        """Judge again, as at the claim, the drives of this job still to drain."""
        with self._store.read() as txn:
            every = [d for _, d in txn.list(DRIVES)]
        left = {d["driveID"] for d in every if d["driveID"] in ids and d.get("removing")}
        drive_removal.check(every, left, actions)

    def _mark_removed(self, drive_id: int) -> None:
        with self._store.write() as txn:
            cur = txn.get(DRIVES, drive_id)
            if cur is not None and cur.get("removing"):  # not failed meanwhile
                cur.pop("removing")
                cur.update(status=str(DriveStatus.AVAILABLE), reuse=True)
                txn.put(DRIVES, drive_id, cur)

    def _put_back(self, ids: list[int]) -> None:
        """After a failed removal: every drive of the job still ``removing`` serves again
        (``active``), unless the engine already let it go with nothing left on it. A drive
        the engine failed meanwhile is failed by the health check, which watches active
        drives only (it leaves removing ones to their job)."""
        actions = self.actions
        with self._store.write() as txn:
            for drive_id in ids:
                cur = txn.get(DRIVES, drive_id)
                if cur is None or not cur.get("removing"):
                    continue
                cur.pop("removing")
                if actions is not None and actions.drained(cur):
                    cur.update(status=str(DriveStatus.AVAILABLE), reuse=True)
                txn.put(DRIVES, drive_id, cur)
                log.warning("removal of drive %d stopped; it is %s again", drive_id,
                            cur["status"])

    def _outcome(self, ids: list[int]) -> list[Doc]:
        with self._store.read() as txn:
            docs = {i: txn.get(DRIVES, i) for i in ids}
        return [{"driveID": i, "status": "removed" if d is None else shown_status(d)}
                for i, d in docs.items()]

    def clear_stale_removals(self) -> None:
        """Clear ``removing`` on drives no running removal job covers (left by an older
        sealbox whose removal failed): they are still in service, so they are ``active``."""
        with self._store.write() as txn:
            running = {i for _, job in txn.list(JOBS)
                       if job["resultType"] == DRIVE_REMOVAL and job["status"] == "running"
                       for i in job["params"].get("driveIDs", [])}
            for drive_id, doc in txn.list(DRIVES):
                if doc.get("removing") and drive_id not in running:
                    doc.pop("removing")
                    txn.put(DRIVES, drive_id, doc)
                    log.warning("drive %d was left removing by a failed removal; it is "
                                "active again", drive_id)

    # --- SecureEraseDrives ----------------------------------------------------------------
    def claim_for_erase(self, txn: Txn, ids: Sequence[int]) -> int:
        ids = _distinct(ids)
        for drive_id in ids:
            doc = _member_drive(txn, drive_id)
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
        active = member_nodes(txn)
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


def _require_removable(doc: Doc) -> None:
    if doc["status"] == DriveStatus.FAILED:
        if not doc.get("resynced"):
            raise NotPermitted(
                f"Drive {doc['driveID']} failed and its data is still being "
                "re-protected; remove it when ListDrives no longer shows it failed "
                "with blocksDegraded open (see ListClusterFaults).")
        return
    if doc["status"] != DriveStatus.ACTIVE or doc.get("removing") or doc.get("pendingAdd"):
        raise NotPermitted(
            f"Drive {doc['driveID']} is {shown_status(doc)}; only active or failed "
            "drives can be removed (see ListDrives).")


def _replay(error: Doc) -> SealboxError:
    """The error recorded by a removal that failed before a restart, raised again with its
    Element name (any error class whose constructor takes just the message will do)."""
    name, message = str(error.get("name")), str(error.get("message", ""))
    pending = list(SealboxError.__subclasses__())
    while pending:
        kind = pending.pop()
        if kind.element_name == name and kind.__init__ is SealboxError.__init__:
            return kind(message)
        pending.extend(kind.__subclasses__())
    return InternalError(message)


def member_nodes(txn: Txn) -> set[int]:
    """The nodes that are cluster members (pending nodes are not, until added)."""
    return {n["nodeID"] for _, n in txn.list(NODES) if n["state"] == NodeState.ACTIVE}


def _get(txn: Txn, drive_id: int) -> Doc:
    doc = txn.get(DRIVES, drive_id)
    if doc is None:
        raise DriveNotFound(f"DriveID {drive_id} does not exist.")
    return doc


def _member_drive(txn: Txn, drive_id: int) -> Doc:
    """A drive of the cluster. In Element a pending node's drives are not the cluster's
    (ListDrives does not list them) until the node is added, so here they do not exist."""
    doc = _get(txn, drive_id)
    if doc["nodeID"] not in member_nodes(txn):
        raise DriveNotFound(
            f"DriveID {drive_id} does not exist in the cluster: it is a drive of node "
            f"{doc['nodeID']}, which is not a cluster member (it is pending; see "
            "ListAllNodes).")
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
