"""RekeySoftwareEncryptionAtRestMasterKey: replace the master key, never copy or overwrite it.

The order is DESIGN.md's, so that ``kill -9`` at any instant loses nothing:

1. the job and its target are recorded (with the new key's identifier chosen in advance);
2. the new key is obtained — created and activated on the provider's key server, or a new
   internal key file — and its identifiers recorded before it is used;
3. every drive gets its data key wrapped by the new key in its spare slot (fsynced);
4. one transaction makes the new key current (the *commit*);
5. only then the drives' old slots are cleared and the old key is decommissioned (external:
   Revoke and Destroy on its key server; internal: overwritten and deleted) — with a bounded
   number of attempts: a key server that is down gets a fault and background retries instead
   of holding the job, and with it every further rekey, hostage
   (:mod:`sealbox.cluster.rekey_decommission`);
6. the job completes with the documented result, which says whether the old key was
   decommissioned or is still pending.

A job interrupted before the commit is rolled back at the next start: the staged slots are
cleared and the new key is destroyed (found by its name on the key server if it was created but
not yet recorded). A job interrupted after the commit is rolled forward. Data is never
re-encrypted: only data keys are rewrapped, so the cost grows with drives, not data.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sealbox.cluster import rekey_steps as steps
from sealbox.cluster.audit import AuditLog
from sealbox.cluster.faults import FaultService
from sealbox.cluster.jobs import JobContext, JobService, wait_or_stop
from sealbox.cluster.keyservers import KeyServerStore, get_provider
from sealbox.cluster.keytests import test_endpoints
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.rekey_decommission import Decommissioner
from sealbox.cluster.sear import COLL as SEAR
from sealbox.cluster.sear import EXTERNAL, INTERNAL, SearService, key_info
from sealbox.cluster.storage import StorageService
from sealbox.cluster.unlock import Unlocker
from sealbox.errors import NotPermitted, SealboxError
from sealbox.secrets import Secret
from sealbox.storage.keywrap import wrap_key
from sealbox.store.base import ConfigStore, Doc

REKEY = "RekeySoftwareEncryptionAtRestMasterKey"
log = logging.getLogger("sealbox.rekey")


class RekeyInterrupted(SealboxError):
    element_name = "xRekeyInterrupted"


class RekeyService:
    def __init__(self, store: ConfigStore, sear: SearService, keys: MasterKeys,
                 keyservers: KeyServerStore, storage: StorageService, jobs: JobService,
                 audit: AuditLog, unlocker: Unlocker, boot_id: str,
                 step_delay: float = 0.0) -> None:
        self._store, self._sear, self._keys = store, sear, keys
        self._keyservers, self._storage, self._jobs = keyservers, storage, jobs
        self._audit, self._unlocker, self._boot = audit, unlocker, boot_id
        self._step_delay = step_delay  # test-only: widens each step for crash tests
        self.closing = threading.Event()
        # FaultService keeps no state of its own: a view over the same store's faults.
        self._decom = Decommissioner(store, keys, keyservers, FaultService(store), audit,
                                     self.closing)
        jobs.register(REKEY, self._run)
        # Old keys left pending by an earlier run are retried once the drives are unlocked
        # (the job itself waits for that too).
        unlocker.after_unlock.append(self._decom.resume)

    # --- starting -------------------------------------------------------------------------
    def start(self, who: str, management: str, provider_id: int | None) -> int:
        """Validate everything, record the job, launch it; nothing changes if this raises."""
        self._check_ready(management, provider_id)
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            assert doc is not None
            if doc.get("rekey"):
                raise NotPermitted(_busy(doc["rekey"]["jobID"]))
            job_id = self._jobs.create(txn, REKEY, {"who": who})
            doc["rekey"] = {
                "jobID": job_id, "boot": self._boot, "phase": "recorded",
                "management": management, "providerID": provider_id,
                "oldKeyID": doc["currentKeyID"], "newKeyID": str(uuid.uuid4()),
            }
            doc["rekeyMasterKeyAsyncResultID"] = job_id
            txn.put(SEAR, 0, doc)
        self._jobs.launch(job_id)
        return job_id

    def _check_ready(self, management: str, provider_id: int | None) -> None:
        with self._store.read() as txn:
            doc = txn.get(SEAR, 0)
            if doc is None or doc["state"] != "enabled":
                raise NotPermitted(
                    "Software encryption at rest is not enabled on this cluster (it can only "
                    "be enabled by CreateCluster), so there is no master key to rekey."
                )
            if doc.get("rekey"):
                raise NotPermitted(_busy(doc["rekey"]["jobID"]))
            if management == EXTERNAL:
                assert provider_id is not None
                get_provider(txn, provider_id)
                endpoints = self._keyservers.provider_endpoints(txn, provider_id)
                ids = get_provider(txn, provider_id)["keyServerIDs"]
        if self._storage.engine is None:
            raise NotPermitted(
                "The drives are locked, so their keys cannot be rewrapped: "
                f"{self._storage.unavailable_reason}. Resolve that first (ListClusterFaults)."
            )
        if management == EXTERNAL:
            assert provider_id is not None
            test_endpoints(provider_id, list(zip(ids, endpoints, strict=True)))

    # --- the job --------------------------------------------------------------------------
    def _run(self, ctx: JobContext) -> Doc:
        rk = self._rekey()
        if rk is None or rk["jobID"] != ctx.job_id:
            raise RekeyInterrupted("This rekey job no longer has a record; nothing was changed.")
        wait_or_stop(self._unlocker.unlocked, self.closing, "the rekey waits for the drives")
        if rk["boot"] != self._boot and rk["phase"] in ("recorded", "created", "staged"):
            self._rollback(ctx, rk)
            raise RekeyInterrupted(
                "The rekey was interrupted by a restart before the new master key took over; "
                f"it was rolled back and the cluster stays on master key {rk['oldKeyID']}. "
                "Run RekeySoftwareEncryptionAtRestMasterKey again."
            )
        table: dict[str, Callable[[JobContext, Doc], None]] = {
            "recorded": self._create, "created": self._rewrap, "staged": self._commit,
            "committed": self._decommission,
        }
        try:
            while rk["phase"] in table:
                table[rk["phase"]](ctx, rk)
                rk = self._rekey() or rk
        except SealboxError:
            if rk["phase"] in ("recorded", "created", "staged"):
                self._rollback(ctx, rk)  # the cluster stays on the old key, as if never begun
            raise
        return self._finish(ctx, rk)

    def _rekey(self) -> Doc | None:
        with self._store.read() as txn:
            doc = txn.get(SEAR, 0) or {}
        rk: Doc | None = doc.get("rekey")
        return rk

    def _pause(self) -> None:
        if self._step_delay:
            time.sleep(self._step_delay)

    def _set(self, **changes: Any) -> None:
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            assert doc is not None and doc.get("rekey")
            doc["rekey"].update(changes)
            txn.put(SEAR, 0, doc)

    def _progress(self, ctx: JobContext, rk: Doc, state: str) -> None:
        ctx.progress(state=state, operation=steps.operation(self._store, rk))

    def _create(self, ctx: JobContext, rk: Doc) -> None:
        self._progress(ctx, rk, "CreateNewMasterKey")
        who, what = ctx.params.get("who", "?"), f"provider={rk['providerID']}"
        try:
            record = steps.create_key(self._store, self._keys, rk, self._pause)
        except SealboxError as e:
            self._audit.record(who, "CreateMasterKey", [], "error", f"{what} {e.element_name}")
            raise
        self._audit.record(who, "CreateMasterKey", [], "success",
                           f"keyID={record['keyID']} {what}")
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            assert doc is not None
            doc["keys"][record["keyID"]] = record
            doc["rekey"].update(phase="created", newKeyID=record["keyID"])
            txn.put(SEAR, 0, doc)
        self._pause()

    def _rewrap(self, ctx: JobContext, rk: Doc) -> None:
        self._progress(ctx, rk, "RewrapDataEncryptionKeys")
        new_mk = self._keys.get(rk["newKeyID"])
        for n, (_doc, drive) in enumerate(self._storage.drives()):
            drive.stage_rewrap(rk["newKeyID"], new_mk)
            if n % 16 == 0:
                self._pause()
        integrity = self._sear.integrity_key(self._keys)
        wrapped = base64.b64encode(wrap_key(new_mk, Secret(integrity))).decode()
        self._set(phase="staged", integrity=wrapped)
        self._pause()

    def _commit(self, ctx: JobContext, rk: Doc) -> None:
        new_mk = self._keys.get(rk["newKeyID"])
        with self._storage.exclusive(), self._store.write() as txn:
            # A drive added since the rewrap (AddDrives) gets its slot now, under the lock
            # that keeps further drives out until the new key is current.
            for _doc, drive in self._storage.drives():
                drive.stage_rewrap(rk["newKeyID"], new_mk)
            doc = txn.get(SEAR, 0)
            assert doc is not None
            doc["integrity"][rk["newKeyID"]] = doc["rekey"].pop("integrity")
            doc["currentKeyID"] = rk["newKeyID"]
            doc["rekey"]["phase"] = "committed"
            txn.put(SEAR, 0, doc)
            if rk["management"] == EXTERNAL:
                self._keyservers.mark_in_use(txn, rk["providerID"], steps.USE)
        log.info("master key %s is current (was %s)", rk["newKeyID"], rk["oldKeyID"])
        self._pause()

    def _decommission(self, ctx: JobContext, rk: Doc) -> None:
        """The new key is committed: clear the old slots and try to destroy the old key, but
        only a bounded number of times. If that fails, the old key's record moves to the
        pending decommissions in the same transaction that ends this phase, so it is never
        forgotten, and the job goes on to complete (a restart before that transaction runs
        this phase again)."""
        self._progress(ctx, rk, "DecommissionOldMasterKey")
        for _doc, drive in self._storage.drives():
            drive.retire_slot(rk["oldKeyID"])
        self._pause()
        old = self._keys.record(rk["oldKeyID"])
        failure = None
        if old is not None:
            ctx.progress(keyToDecommission=_brief(old))
            failure = self._decom.in_job(old, rk["jobID"], ctx.params.get("who", "?"),
                                         lambda details: ctx.progress(**details))
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            assert doc is not None
            old = doc["keys"].pop(rk["oldKeyID"], None)
            doc["integrity"].pop(rk["oldKeyID"], None)
            doc["rekey"]["phase"] = "decommissioned"
            doc["rekey"]["decommissioned"] = old
            if failure is None:
                self._decom.resolve(txn, rk["oldKeyID"])
            elif old is not None:
                doc["rekey"]["pending"] = self._decom.defer(txn, doc, old, rk["jobID"], failure)
            txn.put(SEAR, 0, doc)
            steps.release_provider(self._keyservers, txn, doc, old)
        self._keys.forget(rk["oldKeyID"])
        if failure is not None and old is not None:
            self._decom.audit_deferred(old, failure)
            self._decom.continue_in_background()
        self._pause()

    def _finish(self, ctx: JobContext, rk: Doc) -> Doc:
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            assert doc is not None
            old = rk.get("decommissioned") or {"keyID": rk["oldKeyID"],
                                               "keyManagementType": INTERNAL}
            result = {  # the shape of the seed's example: identifiers and management only
                "keyToDecommission": _brief(old), "newKey": _brief(doc["keys"][rk["newKeyID"]]),
                "operation": steps.operation_text(old, doc["keys"][rk["newKeyID"]]),
                "state": "Ready",
                # sealbox's addition (an enum, as the job's states are): whether the old key
                # is gone, or still exists because its key server could not be reached; then
                # the fault and the reason, the same as the job's details said.
                "keyToDecommissionState": "Decommissioned",
            }
            pending = rk.get("pending")
            if pending:
                result.update(keyToDecommissionState="DecommissionPending",
                              reason=pending["reason"], clusterFaultID=pending["clusterFaultID"])
            doc["rekey"] = None
            txn.put(SEAR, 0, doc)
        ctx.progress(state="Ready")
        return result

    def _rollback(self, ctx: JobContext, rk: Doc) -> None:
        log.warning("rolling back rekey job %d (phase %s)", rk["jobID"], rk["phase"])
        for _doc, drive in self._storage.drives():
            drive.retire_slot(rk["newKeyID"])
        steps.destroy_new_key(self._store, self._keys, rk, self._audit, self.closing)
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            assert doc is not None
            doc["keys"].pop(rk["newKeyID"], None)
            doc["integrity"].pop(rk["newKeyID"], None)
            doc["rekey"] = None
            txn.put(SEAR, 0, doc)
        self._keys.forget(rk["newKeyID"])


def _brief(key: Doc) -> Doc:
    info = key_info(key)
    info.pop("keyCreatedTime", None)
    return info


def _busy(job_id: int) -> str:
    return (f"A rekey is already in progress (async handle {job_id}); wait for it to finish "
            "(GetAsyncResult) before starting another.")
