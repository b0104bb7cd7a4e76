"""Where the cluster's master keys come from: the internal key files, or a KMIP key provider.

Every master key the cluster knows has a record in the software-encryption document (``keys``):
its ``keyID`` (a UUID, which is what drives and the API name it by), whether it is internal or
external, and for external keys the provider and the key server's own identifier (``kmipUID``).
External key bytes are fetched from the provider and held in memory only; nothing but the
identifiers is ever written.
"""

from __future__ import annotations

import threading

from sealbox.cluster.audit import AuditLog
from sealbox.cluster.keyservers import KeyServerStore
from sealbox.cluster.sear import COLL as SEAR
from sealbox.cluster.sear import EXTERNAL
from sealbox.errors import SealboxError
from sealbox.kmip.provider import ProviderClient
from sealbox.secrets import Secret
from sealbox.storage.keysource import InternalKeyStore, MasterKeyUnavailable
from sealbox.store.base import ConfigStore, Doc


class MasterKeys:
    """A :class:`sealbox.storage.keysource.KeySource` over internal and external keys."""

    def __init__(self, store: ConfigStore, internal: InternalKeyStore,
                 keyservers: KeyServerStore, audit: AuditLog) -> None:
        self._store = store
        self.internal = internal
        self._keyservers = keyservers
        self._audit = audit
        self._last_failure = ""
        self._cache: dict[str, Secret] = {}
        self._lock = threading.Lock()

    def record(self, key_id: str) -> Doc | None:
        with self._store.read() as txn:
            doc = txn.get(SEAR, 0) or {}
        found: Doc | None = doc.get("keys", {}).get(key_id)
        return found

    def provider_client(self, provider_id: int) -> ProviderClient:
        with self._store.read() as txn:
            return ProviderClient(self._keyservers.provider_endpoints(txn, provider_id))

    def fetch(self, key_id: str) -> Secret:
        """Get an external key from its provider into memory (raises the KMIP error)."""
        rec = self.record(key_id)
        if rec is None or rec["keyManagementType"] != EXTERNAL:
            return self.get(key_id)
        what = f"keyID={key_id} provider={rec['keyProviderID']}"
        try:
            with self.provider_client(rec["keyProviderID"]) as client:
                key = client.get(rec["kmipUID"])
        except SealboxError as e:
            if e.element_name != self._last_failure:  # once per distinct failure, not per retry
                self._audit.record("sealbox", "kmip.GetMasterKey", [], "error",
                                   f"{what} {e.element_name}")
                self._last_failure = e.element_name
            raise
        self._last_failure = ""
        self._audit.record("sealbox", "kmip.GetMasterKey", [], "success", what)
        self.remember(key_id, key)
        return key

    def remember(self, key_id: str, key: Secret) -> None:
        with self._lock:
            self._cache[key_id] = key

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)

    def get(self, master_key_id: str) -> Secret:
        with self._lock:
            key = self._cache.get(master_key_id)
        if key is not None:
            return key
        rec = self.record(master_key_id)
        if rec is not None and rec["keyManagementType"] == EXTERNAL:
            raise MasterKeyUnavailable(
                f"master key {master_key_id} is on key provider {rec['keyProviderID']} and has "
                "not been fetched"
            )
        return self.internal.get(master_key_id)
