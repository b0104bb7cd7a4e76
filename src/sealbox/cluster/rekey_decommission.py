"""Decommissioning the old master key after a rekey, without holding the cluster hostage.

When a rekey gets here its switch is committed: every drive's data key is wrapped by the new
master key, the new key is current and the drives' old key slots are cleared, so the old key
protects nothing any more. Destroying it still matters (a key server that comes back still
holding it holds a key that once protected the data), but it is hygiene, not safety, and a key
server that is down must not stall the cluster:

1. each failed attempt (Revoke, then Destroy on the key server; an internal key file is
   overwritten and deleted) raises a warning ``kmipServerFault`` whose subject is the old key
   (``decommission:<keyID>``) and whose details name the key, its provider and key servers and
   the last error; the job's ``details`` carry the same ``reason`` and the ``clusterFaultID``;
2. the job makes :data:`JOB_ATTEMPTS` attempts, waiting 1, 2, 4 and 8 s between them, then
   completes with its documented result plus ``keyToDecommissionState: DecommissionPending``,
   the ``reason`` and the ``clusterFaultID``; from then on a new rekey is allowed;
3. in that same transaction the old key's record moves from ``keys`` to the durable
   ``pendingDecommission`` map of the software-encryption record, so that the retry and the
   fault can name it after any restart; a background thread (started again after each boot
   unlock) retries with capped backoff (:data:`RETRY_MAX`) and, once the key is destroyed,
   drops the record and resolves the fault;
4. while that is pending the old provider stays *active* under a use that names the key, so
   its last key server cannot be removed (it is the way to the key) and DeleteKeyProviderKmip
   says why it refuses; it becomes inactive, and deletable, once the key is destroyed;
5. an admin whose old key server is gone for good clears the fault (``ClearClusterFaults`` with
   ``faultTypes`` ``current``): the retries stop, the record moves to ``abandonedKeys`` (kept,
   with the key server's own identifier of the key, and audited: never forgotten silently) and
   the provider is released.

Why a number of attempts rather than a time window: an attempt against a key server that does
not answer costs up to ``--kmip-timeout`` per hostname, one against a server that refuses costs
milliseconds; a window in seconds would allow a single attempt in the first case and a busy
loop in the second. Five attempts over at least 15 s ride out a key server restart or failover,
the usual transient, and bound what the job adds to 15 s plus five of the provider's
worst-case attempts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from sealbox.cluster import rekey_steps as steps
from sealbox.cluster.audit import AuditLog
from sealbox.cluster.clock import now_iso
from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.keyservers import PROVIDERS, SERVERS, KeyServerStore
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.sear import COLL as SEAR
from sealbox.cluster.sear import EXTERNAL
from sealbox.errors import SealboxError
from sealbox.store.base import ConfigStore, Doc, Txn

CODE = "kmipServerFault"
PENDING = "pendingDecommission"
ABANDONED = "abandonedKeys"
JOB_ATTEMPTS = 5
FIRST_WAIT = 1.0
# As --unlock-retry-max's default: a key server that comes back is found within half a minute.
RETRY_MAX = 30.0
POLL = 1.0  # how often a background wait looks for a fault the admin cleared
log = logging.getLogger("sealbox.rekey")


def subject(key_id: str) -> str:
    return f"decommission:{key_id}"


def use_label(key_id: str) -> str:
    """The old provider's use while the key awaits destruction (DeleteKeyProviderKmip and
    RemoveKeyServerFromProviderKmip show it in their refusal)."""
    return (f"old software encryption master key {key_id}, not yet revoked and destroyed on "
            "its key server: the cluster keeps retrying, or clear its kmipServerFault with "
            "ClearClusterFaults faultTypes=current to give up on it")


class Decommissioner:
    def __init__(self, store: ConfigStore, keys: MasterKeys, keyservers: KeyServerStore,
                 faults: FaultService, audit: AuditLog, closing: threading.Event) -> None:
        self._store, self._keys, self._keyservers = store, keys, keyservers
        self._faults, self._audit, self._closing = faults, audit, closing
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Test-only: the first wait in seconds (the others scale with it), so that tests of a
        # key server that is down do not spend a minute in backoff; never set in production.
        self._first = float(os.environ.get("SEALBOX_TEST_DECOMMISSION_FIRST_WAIT", FIRST_WAIT))
        self._max = RETRY_MAX * self._first / FIRST_WAIT

    # --- inside the rekey job -------------------------------------------------------------
    def in_job(self, old: Doc, job_id: int, who: str,
               report: Callable[[Doc], None]) -> Doc | None:
        """Try to destroy ``old`` up to :data:`JOB_ATTEMPTS` times, raising the fault and
        ``report``-ing the reason after each failure. None once destroyed; otherwise the last
        failure, for :meth:`defer`. Returns at once (with the failure) if sealbox is stopping."""
        wait, attempt = self._first, 0
        while True:
            attempt += 1
            error = self._attempt(old, who)
            if error is None:
                return None
            with self._store.write() as txn:
                failure = self._failed(txn, old, error, job_id, pending=False)
            report({**failure, "decommissionAttempts": attempt})
            log.warning("cannot decommission old master key %s yet (attempt %d of %d): %s",
                        old["keyID"], attempt, JOB_ATTEMPTS, error["message"])
            if attempt >= JOB_ATTEMPTS or self._closing.wait(wait):
                return failure
            wait *= 2

    def resolve(self, txn: Txn, key_id: str) -> None:
        self._faults.resolve(CODE, subject(key_id), txn)

    def defer(self, txn: Txn, doc: Doc, old: Doc, job_id: int, failure: Doc) -> Doc:
        """In the job's last transaction: keep ``old`` as a pending decommission (``doc`` is
        the software-encryption record, stored by the caller). Returns what the job's result
        adds: the reason and the fault's ID."""
        error = failure["decommissionError"]
        doc.setdefault(PENDING, {})[old["keyID"]] = {
            "key": old, "jobID": job_id, "since": now_iso(), "lastError": error,
        }
        if old["keyManagementType"] == EXTERNAL:
            self._keyservers.mark_in_use(txn, old["keyProviderID"], use_label(old["keyID"]))
        return self._failed(txn, old, error, job_id, pending=True)

    def audit_deferred(self, old: Doc, failure: Doc) -> None:
        self._audit.record("sealbox", _audit_method(old), [], "error",
                           f"{_what(old)} {failure['decommissionError']['name']}; pending, "
                           "retried in the background")

    # --- in the background ----------------------------------------------------------------
    def resume(self) -> None:
        """After the boot unlock: retry the decommissions an earlier run left pending."""
        self.kick(0.0)

    def continue_in_background(self) -> None:
        """After the job gave up: the background goes on where the job's backoff stopped."""
        self.kick(self._first * 2 ** (JOB_ATTEMPTS - 1))

    def kick(self, first_wait: float) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, args=(first_wait,),
                                                name="decommission", daemon=True)
                self._thread.start()

    def _loop(self, wait: float) -> None:
        try:
            while not self._sleep(wait):
                with self._lock:  # kick() starts a new thread once this one has said it ends
                    pending = self._pending()
                    if not pending:
                        self._thread = None
                        return
                for key_id, entry in pending.items():
                    if self._closing.is_set():
                        return
                    self._retry(key_id, entry)
                wait = min(max(wait, self._first) * 2, self._max)
        except Exception:
            # The records are durable: the next start retries them.
            if not self._closing.is_set():
                log.exception("background decommission of old master keys stopped")
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _sleep(self, wait: float) -> bool:
        """Wait ``wait`` seconds, giving up on the keys whose fault the admin clears meanwhile.
        True if sealbox is stopping."""
        deadline = time.monotonic() + wait
        while True:
            self._abandon_cleared()
            left = deadline - time.monotonic()
            if left <= 0:
                return self._closing.is_set()
            if self._closing.wait(min(left, POLL)):
                return True

    def _pending(self) -> dict[str, Doc]:
        with self._store.read() as txn:
            doc = txn.get(SEAR, 0) or {}
        return dict(doc.get(PENDING) or {})

    def _retry(self, key_id: str, entry: Doc) -> None:
        if not self._is_open(key_id):
            return  # cleared by the admin: abandoned at the next look, not tried again
        error = self._attempt(entry["key"], "sealbox")
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            if doc is None or key_id not in (doc.get(PENDING) or {}):
                return
            if error is None:
                entry = doc[PENDING].pop(key_id)
                self._release(txn, entry["key"])
                self.resolve(txn, key_id)
                txn.put(SEAR, 0, doc)
                log.info("old master key %s decommissioned; fault resolved", key_id)
                return
            if subject(key_id) in self._faults.open_subjects(txn, CODE):
                doc[PENDING][key_id]["lastError"] = error
                self._failed(txn, entry["key"], error, entry["jobID"], pending=True)
                txn.put(SEAR, 0, doc)
        log.warning("cannot decommission old master key %s yet: %s", key_id, error["message"])

    def _abandon_cleared(self) -> None:
        if all(self._is_open(k) for k in self._pending()):
            return
        gone: list[Doc] = []
        with self._store.write() as txn:
            doc = txn.get(SEAR, 0)
            if doc is None:
                return
            open_now = set(self._faults.open_subjects(txn, CODE))
            for key_id in [k for k in doc.get(PENDING) or {} if subject(k) not in open_now]:
                entry = doc[PENDING].pop(key_id)
                doc.setdefault(ABANDONED, {})[key_id] = {**entry, "abandonedTime": now_iso()}
                self._release(txn, entry["key"])
                gone.append(entry["key"])
            txn.put(SEAR, 0, doc)
        for old in gone:
            log.warning("decommission of old master key %s abandoned (its fault was cleared): "
                        "it was never revoked or destroyed on %s", old["keyID"], _what(old))
            self._audit.record("sealbox", "AbandonMasterKeyDecommission", [], "success",
                               f"{_what(old)} kmipUID={old['kmipUID']}")

    def _is_open(self, key_id: str) -> bool:
        with self._store.read() as txn:
            return subject(key_id) in self._faults.open_subjects(txn, CODE)

    def _release(self, txn: Txn, old: Doc) -> None:
        if old["keyManagementType"] == EXTERNAL:
            self._keyservers.release(txn, old["keyProviderID"], use_label(old["keyID"]))

    # --- shared ---------------------------------------------------------------------------
    def _attempt(self, old: Doc, who: str) -> Doc | None:
        try:
            steps.destroy_key(self._keys, old, self._audit, who)
        except SealboxError as e:
            return {"name": e.element_name, "message": e.message}
        return None

    def _failed(self, txn: Txn, old: Doc, error: Doc, job_id: int, pending: bool) -> Doc:
        """Raise (or bring up to date) the key's fault; the job's view of it."""
        reason = _reason(txn, old, error, job_id, pending)
        fault_id = self._faults.raise_fault(Fault(
            CODE, Severity.WARNING, FaultType.CLUSTER, reason, subject=subject(old["keyID"]),
            data={"keyID": old["keyID"], "keyManagementType": old["keyManagementType"],
                  "keyProviderID": old["keyProviderID"], "kmipUID": old["kmipUID"],
                  "asyncHandle": job_id, "reason": error["name"]},
        ), txn)
        return {"reason": reason, "clusterFaultID": fault_id, "decommissionError": error}


def _reason(txn: Txn, old: Doc, error: Doc, job_id: int, pending: bool) -> str:
    head = (f"The old master key {old['keyID']} could not be revoked and destroyed "
            f"{_where(txn, old)}: {error['message']} The new master key is current and "
            "protects all data; the old one protects nothing any more but still exists. ")
    if not pending:
        return head + (
            f"The rekey (async handle {job_id}) tries again a few times, then completes "
            "without it; the cluster then keeps retrying in the background and resolves this "
            "fault once the key is destroyed.")
    tail = (f"The rekey (async handle {job_id}) completed without destroying it; the cluster "
            "keeps retrying in the background and resolves this fault once the key is "
            "destroyed. If the key server is gone for good, clear this fault (ClearClusterFaults "
            "with faultTypes current): the retries stop")
    if old["keyManagementType"] != EXTERNAL:
        return head + tail + "."
    return head + tail + (
        f" and key provider {old['keyProviderID']} can be deleted; should the key server "
        f"ever return, destroy the key with identifier {old['kmipUID']} on it yourself.")


def _where(txn: Txn, old: Doc) -> str:
    if old["keyManagementType"] != EXTERNAL:
        return "in the internal key store"
    provider_id = old["keyProviderID"]
    provider = txn.get(PROVIDERS, provider_id) or {"name": "?", "keyServerIDs": []}
    servers = [s for s in (txn.get(SERVERS, i) for i in provider["keyServerIDs"]) if s]
    names = ", ".join(f"{s['keyServerID']} ({s['name']}: {','.join(s['hostnames'])}:"
                      f"{s['port']})" for s in servers) or "none"
    return (f"on key provider {provider_id} ({provider['name']}; key servers {names}; key "
            f"server identifier {old['kmipUID']})")


def _what(old: Doc) -> str:
    return f"keyID={old['keyID']} provider={old['keyProviderID']}"


def _audit_method(old: Doc) -> str:
    return ("kmip.DestroyMasterKey" if old["keyManagementType"] == EXTERNAL
            else "DestroyInternalMasterKey")
