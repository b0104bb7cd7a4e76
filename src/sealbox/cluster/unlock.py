"""Boot unlock: get the master key, unlock the drives, open the volumes — or say why not.

With an external master key the cluster must fetch it from the key provider (each server of
the provider, each hostname of a server, with bounded timeouts) before any drive can be read;
with hardware encryption at rest, every locked self-encrypting drive needs its authentication
key too (fetched all at once; a drive whose key the key server no longer has is failed, never
guessed at, and its data re-protected from the other copies).
If it cannot, ``kmipServerFault`` (error) names the provider, its servers and the reason, the
drives stay locked, NBD refuses to serve volumes, and the API keeps answering so the admin can
fix the key server configuration. Attempts repeat with capped exponential backoff, and the
first success unlocks everything and resolves the fault by itself.

A drive that does not open at all (file missing, metadata unreadable: it died while the cluster
was down) is failed once the volumes open without it, if that loses nothing
(:mod:`sealbox.cluster.boot_losses`). Otherwise nothing is failed, ``volumesOffline`` says why,
and the same retries go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sealbox.cluster.authkeys import AkUnavailable
from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.keyservers import PROVIDERS, SERVERS
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.sear import EXTERNAL, SearService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DRIVES
from sealbox.cluster.volumes import VolumeService
from sealbox.errors import SealboxError
from sealbox.store.base import ConfigStore, Doc

CODE = "kmipServerFault"
OFFLINE = "volumesOffline"  # drives did not open at start-up and cannot be failed safely
SUBJECT = "boot-unlock"
log = logging.getLogger("sealbox.unlock")


class Unlocker:
    def __init__(self, store: ConfigStore, sear: SearService, keys: MasterKeys,
                 storage: StorageService, volumes: VolumeService, faults: FaultService,
                 retry_max: float) -> None:
        self._store, self._sear, self._keys = store, sear, keys
        self._storage, self._volumes, self._faults = storage, volumes, faults
        self._retry_max = retry_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.unlocked = threading.Event()
        # Fails a drive whose authentication key is missing or wrong (DriveHealth.fail).
        self.fail_drive: Callable[[Doc, str], None] | None = None
        self.after_unlock: list[Callable[[], None]] = []

    def start(self) -> None:
        if self.attempt():
            return
        self._thread = threading.Thread(target=self._retry, name="unlock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _retry(self) -> None:
        delay = min(1.0, self._retry_max)
        while not self._stop.wait(delay):
            if self.attempt():
                return
            delay = min(delay * 2, self._retry_max)

    def attempt(self) -> bool:
        """One try; True once the drives are unlocked (or nothing needs unlocking)."""
        with self._store.read() as txn:
            created = txn.get("cluster", 0) is not None
            current = self._sear.current_key(txn)
        if not created:
            return True  # nothing to unlock until CreateCluster
        if current is not None and current["keyManagementType"] == EXTERNAL:
            try:
                self._keys.fetch(current["keyID"])
            except SealboxError as e:
                self._locked(current, e)
                return False
        outcome = self._storage.start()
        if outcome.unavailable:
            self._aks_unavailable(outcome.unavailable)
            return False
        for drive_id, error in outcome.invalid.items():
            self._key_invalid(drive_id, error)
        if self._storage.engine is None:
            if outcome.broken:
                self._offline(outcome.broken)
            else:  # another reason now (or none left): the fault would name the wrong drives
                self._faults.resolve(OFFLINE, SUBJECT)
            return False
        for drive_id in outcome.failed:
            self._broken(drive_id, outcome.broken[drive_id])
        self._volumes.reconcile()
        self._faults.resolve(CODE, SUBJECT)
        self._faults.resolve(OFFLINE, SUBJECT)
        self.unlocked.set()
        for hook in self.after_unlock:
            hook()
        log.info("drives unlocked; volumes are served")
        return True

    def _key_invalid(self, drive_id: int, error: SealboxError) -> None:
        """Not guessed at: the drive is failed, and its data re-protected from the copies."""
        log.error("drive %d failed: %s", drive_id, error.message)
        self._fail(drive_id, f"its authentication key is invalid: {error.message}")

    def _broken(self, drive_id: int, error: SealboxError) -> None:
        """A drive that died while the cluster was down (already failed in the volume engine):
        failed, as one failing in service is, and its data re-protected from the others."""
        log.error("drive %d could not be opened at start-up: %s", drive_id, error.message)
        self._fail(drive_id, f"it could not be opened at start-up: {error.message}")

    def _fail(self, drive_id: int, reason: str) -> None:
        # An error here must not stop the volumes from being served: the drive stays out of
        # service, and the next start-up fails it again.
        try:
            with self._store.read() as txn:
                doc = txn.get(DRIVES, drive_id)
            if doc is not None and self.fail_drive is not None:
                self.fail_drive(doc, reason)
        except Exception:
            log.exception("drive %d: recording its failure failed", drive_id)

    def _offline(self, broken: dict[int, SealboxError]) -> None:
        """Drives did not open and failing them could lose data (see
        :mod:`sealbox.cluster.boot_losses`): none is failed, the volumes are not served, the
        attempts go on, and the admin is told."""
        self._faults.raise_fault(Fault(
            OFFLINE, Severity.ERROR, FaultType.CLUSTER,
            f"Volumes are not served: {self._storage.unavailable_reason}. The cluster retries "
            "by itself and serves the volumes as soon as enough drives open.",
            subject=SUBJECT, drive_ids=tuple(sorted(broken))))
        log.warning("volumes offline: %s", self._storage.unavailable_reason)

    def _aks_unavailable(self, unavailable: dict[int, AkUnavailable]) -> None:
        with self._store.read() as txn:
            docs = {i: txn.get(DRIVES, i) or {} for i in unavailable}
            providers = sorted({d["ak"]["providerID"] for d in docs.values()
                                if d.get("ak") and d["ak"]["providerID"] is not None})
            servers = []
            for provider_id in providers:
                provider = txn.get(PROVIDERS, provider_id) or {"keyServerIDs": []}
                servers += [txn.get(SERVERS, i) for i in provider["keyServerIDs"]]
        names = _server_names(servers)
        first = next(iter(unavailable.values()))
        details = (
            f"Cannot unlock {len(unavailable)} self-encrypting drives "
            f"({', '.join(map(str, sorted(unavailable)))}): their authentication keys could not "
            f"be fetched from key provider(s) {providers or 'internal'} (key servers {names}): "
            f"{first.message} The drives stay locked and volumes are not served; the cluster "
            "retries by itself and unlocks as soon as the keys are available."
        )
        self._faults.raise_fault(Fault(
            CODE, Severity.ERROR, FaultType.CLUSTER, details, subject=SUBJECT,
            drive_ids=tuple(sorted(unavailable)),
            data={"keyProviderIDs": providers, "reason": "authenticationKeysUnavailable"},
        ))
        log.warning("unlock failed: %s", first.message)

    def _locked(self, key: Doc, error: SealboxError) -> None:
        provider_id = key["keyProviderID"]
        with self._store.read() as txn:
            provider = txn.get(PROVIDERS, provider_id) or {"name": "?", "keyServerIDs": []}
            servers = [txn.get(SERVERS, i) for i in provider["keyServerIDs"]]
        names = _server_names(servers)
        details = (
            f"Cannot unlock the drives: master key {key['keyID']} could not be fetched from key "
            f"provider {provider_id} ({provider['name']}; key servers {names}): "
            f"{error.message} The drives stay locked and volumes are not served; the cluster "
            "retries by itself and unlocks as soon as the key server answers with the key."
        )
        # What NBD clients are told: NBD has no authentication, so the provider and the kind
        # of failure, never key server addresses (the fault, for admins, has those).
        self._storage.unavailable_reason = (
            f"drives are locked: the master key is unavailable from key provider {provider_id} "
            f"({provider['name']}): {error.element_name}; see ListClusterFaults"
        )
        self._faults.raise_fault(Fault(
            CODE, Severity.ERROR, FaultType.CLUSTER, details, subject=SUBJECT,
            data={"keyProviderID": provider_id, "keyID": key["keyID"],
                  "reason": error.element_name},
        ))
        log.warning("unlock failed: %s", error.message)


def _server_names(servers: list[Doc | None]) -> str:
    """The key servers as a fault names them: ID (name: hostnames:port), or "none"."""
    return ", ".join(
        f"{s['keyServerID']} ({s['name']}: {','.join(s['hostnames'])}:{s['port']})"
        for s in servers if s is not None
    ) or "none"
