from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sealbox.cluster.faults import Fault, FaultFilter, FaultService, FaultType, Severity
from sealbox.cluster.jobs import JobContext, JobService
from sealbox.errors import NoSuchPath, NotPermitted
from sealbox.store.base import Doc
from sealbox.store.sqlite import SqliteStore
from tests.support.proc import wait_until


def test_jobs_resume_after_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    jobs = JobService(store)
    gate = threading.Event()
    jobs.register("Slow", lambda ctx: {"done": gate.wait(30)})
    with store.write() as txn:
        handle = jobs.create(txn, "Slow", {"n": 1})
    # The process "dies" before the job runs: a new service over the same store resumes it.
    jobs.shutdown()
    store.close()
    store = SqliteStore(tmp_path / "c.db")
    again = JobService(store)
    seen: list[Doc] = []

    def run(ctx: JobContext) -> Doc:
        seen.append(ctx.params)
        ctx.progress(step=1)
        return {"ok": True}

    again.register("Slow", run)
    again.resume_all()
    wait_until(lambda: (again.peek(handle) or {}).get("status") == "complete", 10, "resume")
    assert seen == [{"n": 1}]
    result = again.get(handle, keep=False)
    assert result["result"] == {"ok": True} and "details" not in result
    with pytest.raises(NoSuchPath):
        again.get(handle, keep=False)
    gate.set()
    again.shutdown()
    store.close()


def test_failed_job_carries_element_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    jobs = JobService(store)

    def fail(ctx: JobContext) -> Doc:
        raise NotPermitted("cannot do that now")

    def crash(ctx: JobContext) -> Doc:
        raise ZeroDivisionError("internal detail")

    jobs.register("Fail", fail)
    jobs.register("Crash", crash)
    with store.write() as txn:
        a, b = jobs.create(txn, "Fail", {}), jobs.create(txn, "Crash", {})
    jobs.launch(a)
    jobs.launch(b)
    for h in (a, b):
        wait_until(lambda h=h: (jobs.peek(h) or {}).get("status") == "complete", 10, "job")
    assert jobs.peek(a)["error"]["name"] == "xAPINotPermitted"  # type: ignore[index]
    crashed = jobs.peek(b)
    assert crashed is not None and "internal detail" not in str(crashed)
    handles = {h["asyncResultID"]: h for h in jobs.list(None)}
    assert not handles[a]["success"] and handles[a]["completed"]
    jobs.shutdown()
    store.close()


def test_faults_raise_once_resolve_and_clear(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    faults = FaultService(store)
    f = Fault("driveFailed", Severity.ERROR, FaultType.DRIVE, "drive 3 failed",
              subject="drive:3", node_id=2, drive_ids=(3,))
    first = faults.raise_fault(f)
    assert faults.raise_fault(f) == first
    [doc] = faults.list(FaultFilter.CURRENT)
    assert doc["resolvedDate"] == "" and doc["driveID"] == 3 and doc["nodeID"] == 2
    assert faults.resolve("driveFailed", "drive:3")
    [doc] = faults.list(FaultFilter.RESOLVED)
    assert doc["resolved"] and doc["resolvedDate"]
    assert faults.raise_fault(f) != first  # the condition came back: a new fault
    assert faults.clear(FaultFilter.RESOLVED) == 1
    assert [d["code"] for d in faults.list(FaultFilter.ALL)] == ["driveFailed"]
    store.close()
