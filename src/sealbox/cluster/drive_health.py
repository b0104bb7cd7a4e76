"""Drive health: notices failed drives, starts their re-protection and keeps the faults.

A monitor check (every ``--monitor-interval`` seconds). An active drive is **failed** when the
volume engine recorded an I/O failure on it, its file is missing or was replaced by another
drive, or its header no longer reads. Failing a drive: the engine stops using it (durably), its
record becomes ``failed`` with ``driveFailureDetail``, and a durable ``DriveResync`` job
re-protects what it held (:mod:`sealbox.cluster.resync`).

A failed drive whose data has been re-protected goes back to ``available`` as soon as its file
is present (the seed's "marked failed and put in the available state"); AddDrives then erases
it and takes it in again. A failed drive whose file is gone stays ``failed`` until it comes
back or RemoveDrives forgets it.

Faults (each names the drive and its node), raised and resolved here, every round:

* ``driveFailed`` (drive): while the drive is ``failed``.
* ``blockServiceUnhealthy`` (service): while chunk maps still name a block drive that no
  longer serves; ``blocksDegraded`` (cluster): while any chunk lacks one of its two copies.
* ``sliceServiceUnhealthy`` (service): while a node whose slice (metadata) drive failed has no
  active slice drive, or while the volume metadata is kept on fewer than two nodes although
  two nodes have active slice drives (the resync of an added slice drive is not done).
"""

from __future__ import annotations

import time

from sealbox.cluster.drive_ops import DriveOps
from sealbox.cluster.drives import DriveService, drive_of_engine_id
from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.jobs import JobService
from sealbox.cluster.resync import ResyncService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DRIVES, NODES, DriveRole, DriveStatus, NodeState
from sealbox.storage import volume_repair
from sealbox.storage.engine import StorageEngine
from sealbox.store.base import ConfigStore, Doc, Txn

_REWRITE_SECONDS = 10.0


class DriveHealth:
    def __init__(self, store: ConfigStore, faults: FaultService, jobs: JobService,
                 drives: DriveService, storage: StorageService, ops: DriveOps,
                 resync: ResyncService) -> None:
        self._store = store
        self._faults = faults
        self._jobs = jobs
        self._drives = drives
        self._storage = storage
        self._ops = ops
        self._resync = resync
        self._first = True
        self._seen: object = None
        self._written = 0.0

    def check(self) -> None:
        engine = self._storage.engine
        if engine is None:
            return
        if self._first:
            self._first = False
            self._resync.retry_unfinished()
        engine_failed = volume_repair.failed_drives(engine)
        with self._store.read() as txn:
            docs = [d for _, d in txn.list(DRIVES)]
        for doc in docs:
            if doc["status"] == DriveStatus.ACTIVE and not doc.get("pendingAdd"):
                reason = self._ops.problem(doc, engine_failed)
                if reason is not None:
                    self.fail(doc, reason)
        self._refresh(engine)

    def fail(self, doc: Doc, reason: str) -> None:
        """Take a drive out of service as failed and start re-protecting its data."""
        self._ops.fail_out(doc)
        with self._store.write() as txn:
            cur = txn.get(DRIVES, doc["driveID"])
            if cur is None or cur["status"] != DriveStatus.ACTIVE:
                return
            cur.update(status=str(DriveStatus.FAILED), failureDetail=reason, resynced=False)
            cur.pop("removing", None)
            job = self._resync.create(txn, cur)
            txn.put(DRIVES, cur["driveID"], cur)
            self._faults.raise_fault(_drive_failed(cur), txn)
        self._jobs.launch(job)

    # --- faults -------------------------------------------------------------------------------
    def _refresh(self, engine: StorageEngine) -> None:
        missing = volume_repair.under_protected(engine)
        meta_nodes = volume_repair.metadata_nodes(engine)
        nodes_of = {eid: rec.node_id for eid, rec in list(engine.metadata.drives.items())}
        # Skip the write transaction (and its fsync) while nothing the faults depend on has
        # changed; write anyway now and then, in case faults were cleared meanwhile.
        with self._store.read() as txn:
            seen = (sorted(missing), sorted(meta_nodes),
                    [(n["nodeID"], n["state"]) for _, n in txn.list(NODES)],
                    [(d["driveID"], d["status"], d.get("removing"), d.get("pendingAdd"),
                      d.get("resynced"), d.get("reuse"), d["failureDetail"],
                      d["status"] == DriveStatus.FAILED and self._ops.file_present(d))
                     for _, d in txn.list(DRIVES)])
        if seen == self._seen and time.monotonic() - self._written < _REWRITE_SECONDS:
            return
        self._seen, self._written = seen, time.monotonic()
        with self._store.write() as txn:
            for _, doc in txn.list(DRIVES):
                if doc["status"] == DriveStatus.FAILED and doc.get("resynced") and \
                        self._ops.file_present(doc):
                    doc.update(status=str(DriveStatus.AVAILABLE), reuse=True)
                    txn.put(DRIVES, doc["driveID"], doc)
            docs = {d["driveID"]: d for _, d in txn.list(DRIVES)}
            self._drive_faults(txn, docs)
            self._block_faults(txn, missing, nodes_of)
            self._slice_faults(txn, docs, meta_nodes)
            self._drives.refresh_available_fault(txn)

    def _sync(self, txn: Txn, code: str, wanted: dict[str, Fault]) -> None:
        for fault in wanted.values():
            self._faults.raise_fault(fault, txn)
        for subject in self._faults.open_subjects(txn, code):
            if subject not in wanted:
                self._faults.resolve(code, subject, txn)

    def _drive_faults(self, txn: Txn, docs: dict[int, Doc]) -> None:
        self._sync(txn, "driveFailed", {
            f"drive:{i}": _drive_failed(d) for i, d in docs.items()
            if d["status"] == DriveStatus.FAILED})

    def _block_faults(self, txn: Txn, missing: dict[int, int], nodes_of: dict[int, int]) -> None:
        services: dict[str, Fault] = {}
        parts = []
        for eid in sorted(missing):
            drive, node = drive_of_engine_id(eid), nodes_of.get(eid, 0)
            parts.append(f"drive {drive} on node {node}")
            services[f"drive:{drive}"] = Fault(
                "blockServiceUnhealthy", Severity.WARNING, FaultType.SERVICE,
                f"The block service of drive {drive} on node {node} is down: chunks kept a "
                "copy there; the cluster is copying them to other drives.",
                subject=f"drive:{drive}", node_id=node, drive_ids=(drive,), service_id=drive)
        self._sync(txn, "blockServiceUnhealthy", services)
        degraded: dict[str, Fault] = {}
        if missing:
            degraded["cluster"] = Fault(
                "blocksDegraded", Severity.ERROR, FaultType.CLUSTER,
                f"Chunks have a single live copy (copies lost with {'; '.join(parts)}); "
                "re-replication is restoring their second copy (see ListAsyncResults, "
                "DriveResync).",
                drive_ids=tuple(drive_of_engine_id(e) for e in sorted(missing)))
        self._sync(txn, "blocksDegraded", degraded)

    def _slice_faults(self, txn: Txn, docs: dict[int, Doc], meta_nodes: set[int]) -> None:
        active_nodes = {n["nodeID"] for _, n in txn.list(NODES)
                        if n["state"] == NodeState.ACTIVE}
        slices = [d for d in docs.values() if d["role"] == DriveRole.SLICE]
        healthy = {d["nodeID"] for d in slices
                   if d["status"] == DriveStatus.ACTIVE and not d.get("pendingAdd")}
        wanted: dict[str, Fault] = {}
        for node in sorted(active_nodes):
            lost = [d for d in slices if d["nodeID"] == node
                    and d["status"] in (DriveStatus.FAILED, DriveStatus.AVAILABLE)
                    and d.get("reuse", d["status"] == DriveStatus.FAILED)]
            if node not in healthy and lost:
                wanted[f"node:{node}"] = _slice_fault(node, lost, meta_nodes)
            elif node in healthy and len(meta_nodes) < 2 <= len(healthy) and \
                    node not in meta_nodes:
                wanted[f"node:{node}"] = Fault(
                    "sliceServiceUnhealthy", Severity.ERROR, FaultType.SERVICE,
                    f"The slice service on node {node} is resynchronising: the volume "
                    f"metadata is held on node(s) {sorted(meta_nodes)} only.",
                    subject=f"node:{node}", node_id=node)
        self._sync(txn, "sliceServiceUnhealthy", wanted)


def _drive_failed(doc: Doc) -> Fault:
    return Fault(
        "driveFailed", Severity.ERROR, FaultType.DRIVE,
        f"Drive {doc['driveID']} ({doc['role']}, slot {doc['slot']}) on node {doc['nodeID']} "
        f"failed: {doc['failureDetail']}.",
        subject=f"drive:{doc['driveID']}", node_id=doc["nodeID"], drive_ids=(doc["driveID"],))


def _slice_fault(node: int, lost: list[Doc], meta_nodes: set[int]) -> Fault:
    drive = lost[0]
    state = ("is available: add it again with AddDrives" if drive["status"] ==
             DriveStatus.AVAILABLE else "failed: insert a drive (sealbox drive insert) and "
             "add it with AddDrives")
    return Fault(
        "sliceServiceUnhealthy", Severity.ERROR, FaultType.SERVICE,
        f"The slice service on node {node} is down: its metadata drive {drive['driveID']} "
        f"{state}. The volume metadata is held on node(s) {sorted(meta_nodes)}.",
        subject=f"node:{node}", node_id=node, drive_ids=tuple(d["driveID"] for d in lost))
