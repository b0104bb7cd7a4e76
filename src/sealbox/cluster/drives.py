"""Drive lifecycle: ``AddDrives`` takes available drives into the cluster.

Adding is an async job (Element's ``DriveAdd`` result type). The drives are claimed in the same
transaction that records the job, so two concurrent AddDrives cannot take the same drive; the job
then brings each drive into service and is safe to run again after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.jobs import JobContext, JobService
from sealbox.cluster.topology import DRIVES, DriveRole, DriveStatus
from sealbox.errors import DriveNotFound, InvalidParameter, NotPermitted
from sealbox.store.base import ConfigStore, Doc, Txn

DRIVE_ADD = "DriveAdd"
_TYPES = {"slice": DriveRole.SLICE, "volume": DriveRole.SLICE, "block": DriveRole.BLOCK}


@dataclass(frozen=True)
class NewDrive:
    drive_id: int
    type: str | None = None


# Called for each drive as the add job brings it into service (the storage engine hooks here).
DriveActivator = Callable[[Doc], None]


class DriveService:
    def __init__(self, store: ConfigStore, jobs: JobService, faults: FaultService) -> None:
        self._store = store
        self._jobs = jobs
        self._faults = faults
        self.activators: list[DriveActivator] = []
        jobs.register(DRIVE_ADD, self._run_add)

    def claim_for_add(self, txn: Txn, new: Sequence[NewDrive]) -> int:
        if not new:
            raise InvalidParameter("Invalid parameter 'drives': list at least one drive.")
        ids = [d.drive_id for d in new]
        if len(set(ids)) != len(ids):
            raise InvalidParameter("Invalid parameter 'drives': a drive is listed twice.")
        for item in new:
            doc = _get(txn, item.drive_id)
            if doc["status"] != DriveStatus.AVAILABLE:
                raise NotPermitted(
                    f"Drive {item.drive_id} is {doc['status']}; only available drives can be "
                    "added (see ListDrives)."
                )
            _check_type(item, doc)
            doc["status"] = str(DriveStatus.ACTIVE)
            doc["pendingAdd"] = True
            txn.put(DRIVES, item.drive_id, doc)
        return self._jobs.create(txn, DRIVE_ADD, {"driveIDs": ids})

    def _run_add(self, ctx: JobContext) -> Doc:
        ids: list[int] = ctx.params["driveIDs"]
        for n, drive_id in enumerate(ids):
            with self._store.read() as txn:
                doc = txn.get(DRIVES, drive_id)
            if doc is None or not doc.get("pendingAdd"):
                continue
            for activate in self.activators:
                activate(doc)
            with self._store.write() as txn:
                doc.pop("pendingAdd", None)
                txn.put(DRIVES, drive_id, doc)
            ctx.progress(drivesAdded=n + 1, drivesTotal=len(ids))
        self.refresh_available_fault()
        return {"drives": [{"driveID": i, "status": "active"} for i in ids]}

    def refresh_available_fault(self) -> None:
        """Raise ``driveAvailable`` while active nodes have drives not yet added."""
        from sealbox.cluster.topology import NODES, NodeState

        with self._store.write() as txn:
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
