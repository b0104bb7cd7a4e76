"""Re-protection after a drive failure: the durable ``DriveResync`` job.

The job is recorded in the same transaction that marks the drive failed, so a ``kill -9``
during the copy resumes it at the next start (the job framework re-runs running jobs, and the
copy itself is resumable: only chunks still naming the failed drive are copied). Its progress
(``chunksDone``/``chunksTotal``) is the async result's ``details``; ``sealbox status`` shows
it.
"""

from __future__ import annotations

import logging
import threading

from sealbox.cluster.drive_ops import DriveOps
from sealbox.cluster.jobs import COLL as JOBS
from sealbox.cluster.jobs import JobContext, JobService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DRIVES, DriveStatus
from sealbox.errors import SealboxError
from sealbox.storage.volume_errors import NotEnoughSpace
from sealbox.store.base import ConfigStore, Doc, Txn

DRIVE_RESYNC = "DriveResync"
DRIVE_JOBS = ("DriveResync", "DriveAdd", "DriveRemoval", "DriveErase")
_ENGINE_POLL = 0.2
log = logging.getLogger("sealbox.drives")


class ResyncService:
    def __init__(self, store: ConfigStore, jobs: JobService, storage: StorageService,
                 ops: DriveOps, test_step_delay: float = 0.0) -> None:
        self._store = store
        # Test-only: a pause after each copied batch, so crash tests can kill mid-resync.
        self._test_step_delay = test_step_delay
        self._jobs = jobs
        self._storage = storage
        self._ops = ops
        self.closing = threading.Event()
        jobs.register(DRIVE_RESYNC, self._run)

    def create(self, txn: Txn, doc: Doc) -> int:
        """Record the resync of a drive just marked failed, in the caller's transaction."""
        job = self._jobs.create(txn, DRIVE_RESYNC, {
            "driveID": doc["driveID"], "nodeID": doc["nodeID"], "role": doc["role"]})
        doc["resyncAsyncHandle"] = job
        return job

    def _run(self, ctx: JobContext) -> Doc:
        drive_id: int = ctx.params["driveID"]
        while self._storage.engine is None:  # at boot the drives may still be locked
            if self.closing.wait(_ENGINE_POLL):
                raise SealboxError("sealbox is stopping; the resync resumes at next start")
        with self._store.read() as txn:
            doc = txn.get(DRIVES, drive_id)
        if doc is None or doc["status"] != DriveStatus.FAILED:
            return {"driveID": drive_id, "chunksCopied": 0}

        def progress(done: int, total: int) -> None:
            ctx.progress(chunksDone=done, chunksTotal=total)
            if self._test_step_delay:
                self.closing.wait(self._test_step_delay)

        report = self._ops.resync(doc, progress)
        if report.lost:
            log.error("drive %d on node %d: %d chunks could not be re-protected", drive_id,
                      doc["nodeID"], len(report.lost))
            raise NotEnoughSpace(
                f"Drive {drive_id} on node {doc['nodeID']} failed and {len(report.lost)} of "
                "its chunks found no second copy (no readable survivor, or no free slot on "
                "another node); add block drives with AddDrives to retry.")
        with self._store.write() as txn:
            cur = txn.get(DRIVES, drive_id)
            if cur is not None:
                cur["resynced"] = True
                txn.put(DRIVES, drive_id, cur)
        return {"driveID": drive_id, "chunksCopied": report.copied}

    def retry_unfinished(self) -> None:
        """Start a new resync for every failed drive whose last one ended unfinished (after
        AddDrives brought room for the copies)."""
        launch = []
        with self._store.write() as txn:
            for _, doc in txn.list(DRIVES):
                if doc["status"] != DriveStatus.FAILED or doc.get("resynced"):
                    continue
                last = txn.get(JOBS, doc.get("resyncAsyncHandle", -1))
                if last is not None and last["status"] == "running":
                    continue
                launch.append(self.create(txn, doc))
                txn.put(DRIVES, doc["driveID"], doc)
        for job in launch:
            self._jobs.launch(job)


def running_drive_jobs(store: ConfigStore) -> list[Doc]:
    """The drive jobs still running, with their progress (for ``sealbox status``)."""
    with store.read() as txn:
        return [
            {"asyncHandle": jid, "resultType": d["resultType"], "params": d.get("params", {}),
             "details": d.get("details", {}), "createTime": d["createTime"]}
            for jid, d in txn.list(JOBS)
            if d["resultType"] in DRIVE_JOBS and d["status"] == "running"
        ]
