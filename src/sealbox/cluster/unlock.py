"""Boot unlock: get the master key, unlock the drives, open the volumes — or say why not.

With an external master key the cluster must fetch it from the key provider (each server of
the provider, each hostname of a server, with bounded timeouts) before any drive can be read.
If it cannot, ``kmipServerFault`` (error) names the provider, its servers and the reason, the
drives stay locked, NBD refuses to serve volumes, and the API keeps answering so the admin can
fix the key server configuration. Attempts repeat with capped exponential backoff, and the
first success unlocks everything and resolves the fault by itself.
"""

from __future__ import annotations

import logging
import threading

from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.keyservers import PROVIDERS, SERVERS
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.sear import EXTERNAL, SearService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.volumes import VolumeService
from sealbox.errors import SealboxError
from sealbox.store.base import ConfigStore, Doc

CODE = "kmipServerFault"
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
        self._storage.start()
        if self._storage.engine is None:
            return False
        self._volumes.reconcile()
        self._faults.resolve(CODE, SUBJECT)
        self.unlocked.set()
        log.info("drives unlocked; volumes are served")
        return True

    def _locked(self, key: Doc, error: SealboxError) -> None:
        provider_id = key["keyProviderID"]
        with self._store.read() as txn:
            provider = txn.get(PROVIDERS, provider_id) or {"name": "?", "keyServerIDs": []}
            servers = [txn.get(SERVERS, i) for i in provider["keyServerIDs"]]
        names = ", ".join(
            f"{s['keyServerID']} ({s['name']}: {','.join(s['hostnames'])}:{s['port']})"
            for s in servers if s is not None
        ) or "none"
        details = (
            f"Cannot unlock the drives: master key {key['keyID']} could not be fetched from key "
            f"provider {provider_id} ({provider['name']}; key servers {names}): "
            f"{error.message} The drives stay locked and volumes are not served; the cluster "
            "retries by itself and unlocks as soon as the key server answers with the key."
        )
        self._storage.unavailable_reason = (
            f"drives are locked: the master key is unavailable from key provider {provider_id}"
        )
        self._faults.raise_fault(Fault(
            CODE, Severity.ERROR, FaultType.CLUSTER, details, subject=SUBJECT,
            data={"keyProviderID": provider_id, "keyID": key["keyID"],
                  "reason": error.element_name},
        ))
        log.warning("unlock failed: %s", error.message)
