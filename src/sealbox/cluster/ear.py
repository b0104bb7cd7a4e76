"""Hardware encryption at rest: the self-encrypting drives locked with authentication keys.

``EnableEncryptionAtRest`` and ``DisableEncryptionAtRest`` only record what the admin wants
(``GetClusterInfo.encryptionAtRestState`` becomes ``enabling`` / ``disabling``) and wake a
reconciler thread, which brings every drive there and then sets ``enabled`` / ``disabled``.
The reconciler resumes at start, so a ``kill -9`` anywhere leaves a state it finishes.

Per drive, the order is what makes it crash-safe (the drive document's ``ak`` record):

* lock: create the AK (on the key server, or wrapped internally) → record it ``pending`` →
  ``enable_locking(ak)`` → record it ``active``. A crash before the record leaves at most an
  unused key on the key server (named ``sealbox-ak-<keyID>``); after it, the drive is either
  not yet locked (the record is reused) or locked with exactly the recorded key (boot fetches
  it for every locked drive, ``pending`` or not).
* unlock: fetch the AK → ``disable_locking(ak)`` → destroy the AK → drop the record. A crash
  in between finds the drive unlocked and only destroys the key again (already gone is fine).

A drive that cannot be switched (the key server refused to create its key, is unreachable, the
drive is out of service) raises ``enableDriveSecurityFailed`` / ``disableDriveSecurityFailed``
naming it; the reconciler retries with capped backoff and resolves the fault once it works.
Drives not in service (available, failed) hold no data the cluster needs: on disable their AK
is only destroyed, and they are erased before they are used again.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from sealbox.cluster.authkeys import EXTERNAL, INTERNAL, AuthKeys
from sealbox.cluster.clock import now_iso
from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.keyservers import KeyServerStore, get_provider
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DRIVES, DriveStatus
from sealbox.errors import NotPermitted, SealboxError
from sealbox.store.base import ConfigStore, Doc, Txn

COLL = "ear"
USE = "hardwareEncryptionAtRest"  # what the provider is used for while enabled
ENABLED, ENABLING, DISABLED, DISABLING = "enabled", "enabling", "disabled", "disabling"
FAULTS = {ENABLED: "enableDriveSecurityFailed", DISABLED: "disableDriveSecurityFailed"}
log = logging.getLogger("sealbox.ear")


class EarNotReady(SealboxError):
    element_name = "xDriveSecurityNotReady"


class EarService:
    def __init__(self, store: ConfigStore, storage: StorageService, aks: AuthKeys,
                 keyservers: KeyServerStore, faults: FaultService, retry_max: float,
                 step_delay: float = 0.0) -> None:
        self._store = store
        self._storage = storage
        self._aks = aks
        self._keyservers = keyservers
        self._faults = faults
        self._retry_max = retry_max
        self._step_delay = step_delay  # tests only: widens the windows a kill -9 can hit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.drive_lock = threading.RLock()  # one drive's keys change at a time

    # --- the API --------------------------------------------------------------------------
    def enable(self, txn: Txn, provider_id: int | None) -> None:
        """EnableEncryptionAtRest: validate, record ``enabling``, make the provider active."""
        doc = _state_doc(txn)
        state = doc["state"]
        if state in (ENABLED, ENABLING):
            if doc["providerID"] == provider_id:
                return  # already what was asked: nothing changes
            raise NotPermitted(
                f"Encryption at rest is already {state} with "
                f"{_describe(doc['providerID'])}; disable it first to change where the "
                "authentication keys are kept.")
        if state == DISABLING:
            raise NotPermitted("Encryption at rest is being disabled; wait until "
                               "GetClusterInfo shows encryptionAtRestState disabled.")
        if provider_id is not None:
            get_provider(txn, provider_id)
            self._keyservers.provider_endpoints(txn, provider_id)  # has servers, identity
            self._keyservers.mark_in_use(txn, provider_id, USE)
        plain = [d["driveID"] for _, d in txn.list(DRIVES)
                 if self._storage.live_drive(d["driveID"]) is not None
                 and self._storage.sed(d["driveID"]) is None]
        if plain:
            raise NotPermitted(
                "Encryption not allowed. Cluster detected non-encryptable node "
                f"(drives {plain} are not self-encrypting).")
        doc.update(state=ENABLING, providerID=provider_id, keyID=str(uuid.uuid4()),
                   created=now_iso())
        self._put(txn, doc)

    def disable(self, txn: Txn) -> None:
        doc = _state_doc(txn)
        if doc["state"] in (DISABLED, DISABLING):
            return
        doc["state"] = DISABLING
        self._put(txn, doc)

    def info(self) -> Doc:
        """GetEncryptionAtRestInfo: the Element fields, and (a sealbox addition) ``drives``,
        each drive's security state as the drive itself reports it."""
        with self._store.read() as txn:
            doc = _state_doc(txn)
            drives = [d for _, d in txn.list(DRIVES)]
        out: Doc = {"state": doc["state"], "drives": [self._drive_info(d) for d in drives]}
        if doc["state"] != DISABLED and doc.get("keyID"):
            key: Doc = {"keyCreatedTime": doc["created"], "keyID": doc["keyID"],
                        "keyManagementType": INTERNAL if doc["providerID"] is None
                        else EXTERNAL}
            if doc["providerID"] is not None:
                key["keyProviderID"] = doc["providerID"]
            out["authenticationKeyInfo"] = key
        return out

    def _drive_info(self, drive: Doc) -> Doc:
        sed = self._storage.sed(drive["driveID"])
        rec = drive.get("ak")
        info: Doc = {
            "driveID": drive["driveID"], "nodeID": drive["nodeID"], "status": drive["status"],
            # In service: what the drive says; otherwise what the cluster recorded.
            "securityEnabled": sed.locking_enabled if sed is not None
            else bool(rec and rec.get("state") == "active"),
            "driveSecurityFaultReason": drive.get("securityFaultReason", "none"),
        }
        if rec is not None:
            info["keyID"] = rec["keyID"]
            if rec["providerID"] is not None:
                info["keyProviderID"] = rec["providerID"]
        return info

    def _put(self, txn: Txn, doc: Doc) -> None:
        txn.put(COLL, 0, doc)
        cluster = txn.get("cluster", 0)
        if cluster is not None:
            cluster["encryptionAtRestState"] = doc["state"]
            txn.put("cluster", 0, cluster)

    # --- the reconciler -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ear", daemon=True)
        self._thread.start()
        self.kick()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def kick(self) -> None:
        """Something changed (API call, drive added, volumes unlocked): look again."""
        self._wake.set()

    def drive_activated(self, doc: Doc) -> None:
        """AddDrives hook: a drive added while encryption is enabled gets its AK before the
        add completes. If that fails, the add still succeeds (the data is safe, the drive is
        only not locked yet): ``enableDriveSecurityFailed`` names it and the reconciler
        retries."""
        with self._store.read() as txn:
            state = txn.get(COLL, 0)
            cur = txn.get(DRIVES, doc["driveID"])
        if state is None or cur is None or state["state"] not in (ENABLED, ENABLING):
            return
        try:
            with self.drive_lock:
                self._lock_drive(cur, state, adding=True)
        except SealboxError as e:
            log.warning("drive %d: %s", doc["driveID"], e.message)
            self._faults.raise_fault(self._fault(ENABLED, cur, e))
            self.kick()

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                done = self.reconcile()
            except Exception:  # keep the thread alive whatever happens; retried below
                log.exception("encryption at rest: reconcile failed")
                done = False
            if done:
                delay = 1.0
                continue
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self._retry_max)
            self._wake.set()

    def reconcile(self) -> bool:
        """One pass over the drives; True when every drive is where the state wants it."""
        with self._store.read() as txn:
            doc = txn.get(COLL, 0)
            if doc is None or txn.get("cluster", 0) is None:
                return True
            drives = [d for _, d in txn.list(DRIVES)]
        target = ENABLED if doc["state"] in (ENABLED, ENABLING) else DISABLED
        if target == DISABLED and doc["state"] == DISABLED and \
                not any(d.get("ak") for d in drives):
            return True
        if self._storage.engine is None:
            return False  # drives still locked (boot unlock retries): not a drive fault
        failures: dict[int, SealboxError] = {}
        for drive in drives:
            try:
                with self.drive_lock:
                    # Read again under the lock: AddDrives may have just given it a key.
                    with self._store.read() as txn:
                        cur = txn.get(DRIVES, drive["driveID"])
                    if cur is None:
                        continue
                    if target == ENABLED:
                        self._lock_drive(cur, doc)
                    else:
                        self._unlock_drive(cur)
            except SealboxError as e:
                failures[drive["driveID"]] = e
                log.warning("drive %d: %s", drive["driveID"], e.message)
        self._faults_for(target, drives, failures)
        if failures:
            return False
        with self._store.write() as txn:
            cur = _state_doc(txn)
            if cur["state"] in (ENABLING, DISABLING) and \
                    (ENABLED if cur["state"] == ENABLING else DISABLED) == target:
                cur["state"] = target
                if target == DISABLED:
                    if cur["providerID"] is not None:
                        self._keyservers.release(txn, cur["providerID"], USE)
                    cur.update(providerID=None, keyID=None, created=None)
                self._put(txn, cur)
                log.info("encryption at rest %s", target)
        return True

    # --- one drive ------------------------------------------------------------------------
    def _lock_drive(self, drive: Doc, state: Doc, adding: bool = False) -> None:
        if drive["status"] != DriveStatus.ACTIVE or (drive.get("pendingAdd") and not adding):
            return  # gets its AK when added (AddDrives)
        drive_id = drive["driveID"]
        sed = self._storage.sed(drive_id)
        if sed is None:
            if self._storage.live_drive(drive_id) is not None:
                raise NotPermitted(f"drive {drive_id} is not self-encrypting")
            raise self._not_ready(drive_id)
        rec = drive.get("ak")
        if sed.locking_enabled:
            if rec is not None and rec.get("state") != "active":
                self._set_ak(drive_id, {**rec, "state": "active"})  # crashed right after
            return
        if rec is not None and (rec["providerID"] != state["providerID"]
                                or rec.get("state") == "planned"):
            # A pending key from an earlier enable, or one whose Register may or may not have
            # happened before a crash: destroyed (by name, if need be), and a new one made.
            self._aks.destroy(drive_id, rec)
            self._set_ak(drive_id, None)
            rec = None
        if rec is None:
            rec = self._aks.plan(state["providerID"])
            if rec["management"] == EXTERNAL:
                # Named before it exists on the key server: see AuthKeys.plan.
                self._set_ak(drive_id, {**rec, "state": "planned"})
                self._pause()
            rec, ak = self._aks.create(drive_id, rec)
            self._pause()
            rec = {**rec, "state": "pending"}
            self._set_ak(drive_id, rec)  # durable before the drive uses it
        else:
            ak = self._aks.fetch(rec)
        self._pause()
        sed.enable_locking(ak)
        self._pause()
        self._set_ak(drive_id, {**rec, "state": "active"})
        log.info("drive %d locked with authentication key %s", drive_id, rec["keyID"])

    def _unlock_drive(self, drive: Doc) -> None:
        rec = drive.get("ak")
        if rec is None:
            return
        drive_id = drive["driveID"]
        sed = self._storage.sed(drive_id)
        if sed is not None:
            if sed.locking_enabled:
                sed.disable_locking(self._aks.fetch(rec))
                self._pause()
        elif drive["status"] == DriveStatus.ACTIVE and not drive.get("pendingAdd"):
            raise self._not_ready(drive_id)
        self._aks.destroy(drive_id, rec)
        self._pause()
        self._set_ak(drive_id, None)
        log.info("drive %d unlocked; authentication key %s destroyed", drive_id, rec["keyID"])

    def _not_ready(self, drive_id: int) -> EarNotReady:
        return EarNotReady(f"drive {drive_id} is not in service yet "
                           f"({self._storage.unavailable_reason or 'starting'})")

    def _pause(self) -> None:
        if self._step_delay:
            self._stop.wait(self._step_delay)

    def forget_key(self, drive: Doc) -> None:
        """After a secure erase: the drive's AK opens nothing any more; destroy it. Retries
        while the key server is down (the erase job waits) unless sealbox is stopping."""
        delay = 1.0
        while True:
            with self._store.read() as txn:
                cur = txn.get(DRIVES, drive["driveID"]) or {}
            rec = cur.get("ak")
            if rec is None:
                return
            try:
                with self.drive_lock:
                    self._aks.destroy(drive["driveID"], rec)
                    self._set_ak(drive["driveID"], None)
                return
            except SealboxError as e:
                log.warning("drive %d: cannot destroy its authentication key yet: %s",
                            drive["driveID"], e.message)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, self._retry_max)

    def _set_ak(self, drive_id: int, rec: Doc | None) -> None:
        with self._store.write() as txn:
            doc = txn.get(DRIVES, drive_id)
            if doc is None:
                return
            active = rec is not None and rec.get("state") == "active"
            doc.update(ak=rec, keyID=rec["keyID"] if active and rec else None,
                       keyProviderID=rec["providerID"] if active and rec else None)
            txn.put(DRIVES, drive_id, doc)

    # --- faults ---------------------------------------------------------------------------
    def _faults_for(self, target: str, drives: list[Doc],
                    failures: dict[int, SealboxError]) -> None:
        code = FAULTS[target]
        other = FAULTS[DISABLED if target == ENABLED else ENABLED]
        by_id = {d["driveID"]: d for d in drives}
        with self._store.write() as txn:
            for subject in self._faults.open_subjects(txn, other):
                self._faults.resolve(other, subject, txn)
            wanted = {f"drive:{i}" for i in failures}
            for subject in self._faults.open_subjects(txn, code):
                if subject not in wanted:
                    self._faults.resolve(code, subject, txn)
            for drive_id, error in failures.items():
                self._faults.raise_fault(self._fault(target, by_id[drive_id], error), txn)
            for _, doc in txn.list(DRIVES):
                reason = code if doc["driveID"] in failures else "none"
                if doc.get("securityFaultReason") != reason:
                    doc["securityFaultReason"] = reason
                    txn.put(DRIVES, doc["driveID"], doc)


    @staticmethod
    def _fault(target: str, drive: Doc, error: SealboxError) -> Fault:
        verb = "enable" if target == ENABLED else "disable"
        drive_id = drive["driveID"]
        return Fault(
            FAULTS[target], Severity.WARNING, FaultType.DRIVE,
            f"Cannot {verb} drive security on drive {drive_id} (node {drive['nodeID']}, slot "
            f"{drive['slot']}): {error.message} The cluster retries by itself.",
            subject=f"drive:{drive_id}", node_id=drive["nodeID"], drive_ids=(drive_id,),
            data={"reason": error.element_name})


def _state_doc(txn: Txn) -> Doc:
    doc: Doc | None = txn.get(COLL, 0)
    if doc is None:
        if txn.get("cluster", 0) is None:
            raise NotPermitted("The cluster has not been created yet: call CreateCluster first.")
        doc = {"state": DISABLED, "providerID": None, "keyID": None, "created": None}
    return doc


def _describe(provider_id: Any) -> str:
    if provider_id is None:
        return "internal authentication keys"
    return f"authentication keys on key provider {provider_id}"

