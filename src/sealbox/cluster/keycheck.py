"""While running, check that the current external master key is still active on its key server.

If someone revokes or destroys it out of band, the cluster keeps serving with the key it holds
in memory, but the next start could not unlock the drives: a warning-severity
``kmipServerFault`` says so, and what to do (rekey to a new key while the old one is in memory).
"""

from __future__ import annotations

from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.sear import EXTERNAL, SearService
from sealbox.cluster.storage import StorageService
from sealbox.errors import SealboxError
from sealbox.kmip.client import KeyState
from sealbox.kmip.errors import KmipObjectNotFound
from sealbox.store.base import ConfigStore

CODE = "kmipServerFault"
SUBJECT = "master-key-state"


class KeyStateCheck:
    def __init__(self, store: ConfigStore, sear: SearService, keys: MasterKeys,
                 faults: FaultService, storage: StorageService) -> None:
        self._store, self._sear, self._keys = store, sear, keys
        self._faults, self._storage = faults, storage

    def check(self) -> None:
        with self._store.read() as txn:
            key = self._sear.current_key(txn)
        if key is None or key["keyManagementType"] != EXTERNAL or self._storage.engine is None:
            self._faults.resolve(CODE, SUBJECT)
            return
        problem = self._problem(key["keyProviderID"], key["kmipUID"])
        if problem is None:
            self._faults.resolve(CODE, SUBJECT)
            return
        self._faults.raise_fault(Fault(
            CODE, Severity.WARNING, FaultType.CLUSTER,
            f"The current master key {key['keyID']} on key provider {key['keyProviderID']} "
            f"{problem}. The cluster keeps serving with the key it holds in memory, but could "
            "not unlock its drives after a restart: rekey now "
            "(RekeySoftwareEncryptionAtRestMasterKey) to a new key.",
            subject=SUBJECT, data={"keyID": key["keyID"]},
        ))

    def _problem(self, provider_id: int, uid: str) -> str | None:
        try:
            with self._keys.provider_client(provider_id) as client:
                state = client.get_attributes(uid).state
        except KmipObjectNotFound:
            return "no longer exists on the key server (destroyed or missing)"
        except SealboxError as e:
            return f"could not be checked: {e.message}"
        if state is not KeyState.ACTIVE:
            return f"is {state.name.lower()} on the key server"
        return None
