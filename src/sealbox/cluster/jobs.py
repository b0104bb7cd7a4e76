"""Durable asynchronous jobs, Element's *async results*.

A job is recorded in the configuration store before it starts, and its progress after each step,
so a job that was running when the process died is run again at the next start. Handlers are
therefore written as resumable steps: each looks at what is already done and carries on. A job
ends ``complete`` with either a ``result`` or an Element ``error`` object; no traceback is ever
stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from sealbox.cluster.clock import now_iso
from sealbox.errors import InternalError, NoSuchPath, SealboxError
from sealbox.store.base import ConfigStore, Doc, Txn, path_of

COLL = "asyncresults"
log = logging.getLogger("sealbox.jobs")


class JobStopped(Exception):
    """Raised by a handler when sealbox stops while the job waits (for the drives to unlock,
    for a key server to come back): the job is not finished, so it stays ``running`` and
    resumes at the next start. Ending it with an error instead would leave its work half done
    with nothing to carry it on."""


def wait_or_stop(ready: threading.Event, closing: threading.Event, what: str) -> None:
    """In a job: wait until ``ready`` is set; :class:`JobStopped` if ``closing`` is set first
    (``what`` says what the job waits for, in the log)."""
    while not ready.wait(0.5):
        if closing.is_set():
            raise JobStopped(f"sealbox is stopping while {what}")


class JobContext:
    """What a running handler sees: its parameters and a way to record progress."""

    def __init__(self, store: ConfigStore, job_id: int, params: Doc, details: Doc) -> None:
        self._store = store
        self.job_id = job_id
        self.params = params
        self.details = details

    def progress(self, **details: Any) -> None:
        """Record progress durably (shown as ``details`` by GetAsyncResult)."""
        self.details.update(details)
        with self._store.write() as txn:
            doc = txn.get(COLL, self.job_id)
            if doc is not None:
                doc.update(details=self.details, lastUpdateTime=now_iso())
                txn.put(COLL, self.job_id, doc)


class JobHandler(Protocol):
    def __call__(self, ctx: JobContext) -> Doc:
        """Do (or finish) the work; return the result object or raise SealboxError (the job
        ends with that error) or :class:`JobStopped` (it stays running)."""
        ...


class JobService:
    def __init__(self, store: ConfigStore, workers: int = 4) -> None:
        self._store = store
        self._handlers: dict[str, JobHandler] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._running: dict[int, Future[None]] = {}
        self._lock = threading.Lock()

    def register(self, result_type: str, handler: JobHandler) -> None:
        self._handlers[result_type] = handler

    def create(self, txn: Txn, result_type: str, params: Doc) -> int:
        """Record a new job inside the caller's transaction; :meth:`launch` it after commit."""
        if result_type not in self._handlers:
            raise InternalError(f"no handler for async result type {result_type}")
        job_id = txn.next_id(COLL)
        now = now_iso()
        txn.put(COLL, job_id, {
            "resultType": result_type, "status": "running", "createTime": now,
            "lastUpdateTime": now, "params": params, "details": {},
        })
        return job_id

    def launch(self, job_id: int) -> None:
        with self._lock:
            if job_id not in self._running:
                self._running[job_id] = self._pool.submit(self._run, job_id)

    def resume_all(self) -> None:
        """Start again every job that was running when the process last stopped."""
        with self._store.read() as txn:
            pending = [jid for jid, d in txn.list(COLL) if d["status"] == "running"]
        for job_id in pending:
            log.info("resuming async job %d", job_id)
            self.launch(job_id)

    def _run(self, job_id: int) -> None:
        with self._store.read() as txn:
            doc = txn.get(COLL, job_id)
        if doc is None:
            return
        handler = self._handlers[doc["resultType"]]
        ctx = JobContext(self._store, job_id, doc["params"], dict(doc.get("details", {})))
        try:
            outcome: Doc = {"result": handler(ctx)}
        except JobStopped as e:
            log.info("async job %d stops with sealbox and resumes at the next start: %s",
                     job_id, e)
            with self._lock:
                self._running.pop(job_id, None)
            return
        except SealboxError as e:
            log.warning("async job %d failed: %s", job_id, e.message)
            outcome = {"error": e.to_element()}
        except Exception:
            log.exception("async job %d failed unexpectedly", job_id)
            outcome = {"error": InternalError("the job failed; see the sealbox log").to_element()}
        self._finish(job_id, outcome)

    def _finish(self, job_id: int, outcome: Doc) -> None:
        with self._store.write() as txn:
            doc = txn.get(COLL, job_id)
            if doc is not None:
                doc.update(outcome, status="complete", lastUpdateTime=now_iso())
                txn.put(COLL, job_id, doc)
        with self._lock:
            self._running.pop(job_id, None)

    def get(self, job_id: int, keep: bool) -> Doc:
        """GetAsyncResult: a finished result is purged once returned unless ``keep``."""
        with self._store.write() as txn:
            doc = txn.get(COLL, job_id)
            if doc is None:
                raise NoSuchPath(
                    "DBClient operation requested on a non-existent path at "
                    f"[{path_of(COLL, job_id)}]"
                )
            if doc["status"] == "complete" and not keep:
                txn.delete(COLL, job_id)
        return _public(doc)

    def peek(self, job_id: int) -> Doc | None:
        with self._store.read() as txn:
            doc = txn.get(COLL, job_id)
        return None if doc is None else _public(doc)

    def list(self, types: Iterable[str] | None) -> list[Doc]:
        wanted = None if types is None else set(types)
        with self._store.read() as txn:
            docs = txn.list(COLL)
        return [
            _handle(jid, d) for jid, d in docs if wanted is None or d["resultType"] in wanted
        ]

    def shutdown(self, timeout: float = 15.0) -> None:
        """Start no more jobs and give the running ones ``timeout`` seconds to stop (their
        handlers watch the cluster's stop signals); a job cut short resumes at the next start."""
        with self._lock:
            running = list(self._running.values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        wait(running, timeout=timeout)


def _public(doc: Doc) -> Doc:
    out = {k: doc[k] for k in ("createTime", "lastUpdateTime", "resultType", "status")}
    if doc["status"] == "running":  # progress; a finished job shows its result, as Element's
        out["details"] = doc.get("details", {})
    for key in ("result", "error"):
        if key in doc:
            out[key] = doc[key]
    return out


def _handle(job_id: int, doc: Doc) -> Doc:
    done = doc["status"] == "complete"
    return {
        "asyncResultID": job_id,
        "completed": done,
        "createTime": doc["createTime"],
        "lastUpdateTime": doc["lastUpdateTime"],
        "resultType": doc["resultType"],
        "success": done and "error" not in doc,
        "data": doc.get("result", doc.get("error", doc.get("details", {}))),
    }
