"""Software encryption at rest: its state, and the master key that protects every drive key.

With software encryption on, each drive's data key is stored only wrapped by the cluster's
master key (DESIGN.md, Keys). This module keeps the record of which master key is current and
hands out a :class:`KeySource` for it. The engine's integrity key (which keys the sector
checksums) is kept here too, wrapped by the same master key, so that it is as safe as the data
keys and moves with them at a rekey.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from sealbox.cluster.clock import now_iso
from sealbox.errors import NotPermitted
from sealbox.secrets import Secret
from sealbox.storage.keysource import InternalKeyStore, KeySource
from sealbox.storage.keywrap import unwrap_key, wrap_key
from sealbox.store.base import ConfigStore, Doc, Txn

COLL = "sear"
INTERNAL = "internal"
EXTERNAL = "external"


def key_record(key_id: str, management: str, provider_id: int | None = None,
               kmip_uid: str | None = None) -> Doc:
    """What the cluster keeps about a master key: identifiers only, never its bytes."""
    return {"keyID": key_id, "keyManagementType": management, "keyProviderID": provider_id,
            "kmipUID": kmip_uid, "keyCreatedTime": now_iso()}


def key_info(key: Doc) -> Doc:
    """The Element ``EncryptionKeyInfo`` of a master key record."""
    info: Doc = {
        "keyCreatedTime": key["keyCreatedTime"], "keyID": key["keyID"],
        "keyManagementType": key["keyManagementType"],
    }
    if key.get("keyProviderID") is not None:
        info["keyProviderID"] = key["keyProviderID"]
    return info


class SearService:
    def __init__(self, store: ConfigStore, keys_dir: Path) -> None:
        self._store = store
        self.internal = InternalKeyStore(keys_dir)

    def record(self, txn: Txn) -> Doc | None:
        return txn.get(COLL, 0)

    def enabled(self, txn: Txn) -> bool:
        doc = txn.get(COLL, 0)
        return doc is not None and doc["state"] == "enabled"

    def initialise(self, txn: Txn, enabled: bool) -> None:
        """At cluster creation: a new internal master key (if enabled) and integrity key."""
        integrity = Secret(os.urandom(32))
        doc: Doc = {"state": "enabled" if enabled else "disabled", "version": 1 if enabled else 0,
                    "rekeyMasterKeyAsyncResultID": None}
        if enabled:
            mk_id = self.internal.create()
            mk = self.internal.get(mk_id)
            doc["currentKeyID"] = mk_id
            doc["keys"] = {mk_id: key_record(mk_id, INTERNAL)}
            doc["integrity"] = {mk_id: base64.b64encode(wrap_key(mk, integrity)).decode()}
        else:
            # Without encryption the data is plaintext; its checksum key guards nothing secret.
            doc["integrityPlain"] = base64.b64encode(integrity.reveal()).decode()
        txn.put(COLL, 0, doc)

    def current_key_id(self, txn: Txn) -> str | None:
        doc = txn.get(COLL, 0)
        if doc is None or doc["state"] != "enabled":
            return None
        key_id: str = doc["currentKeyID"]
        return key_id

    def current_key(self, txn: Txn) -> Doc | None:
        doc = txn.get(COLL, 0)
        if doc is None or doc["state"] != "enabled":
            return None
        current: Doc = doc["keys"][doc["currentKeyID"]]
        return current

    def integrity_key(self, source: KeySource) -> bytes:
        with self._store.read() as txn:
            doc = txn.get(COLL, 0)
        if doc is None:
            raise NotPermitted("The cluster has not been created yet.")
        if "integrityPlain" in doc:
            return base64.b64decode(doc["integrityPlain"])
        for mk_id, wrapped in doc["integrity"].items():
            try:
                return unwrap_key(source.get(mk_id), base64.b64decode(wrapped)).reveal()
            except Exception:  # noqa: S112 - try the next slot; the last failure is reported below
                continue
        raise NotPermitted("No master key that protects the integrity key is available.")

    def info(self) -> Doc:
        """GetSoftwareEncryptionAtRestInfo (``state`` and, as the seed shows it, ``status``)."""
        with self._store.read() as txn:
            doc = txn.get(COLL, 0)
        if doc is None:
            raise NotPermitted("The cluster has not been created yet: call CreateCluster first.")
        out: Doc = {"state": doc["state"], "status": doc["state"], "version": doc["version"]}
        if doc.get("currentKeyID"):
            out["masterKeyInfo"] = key_info(doc["keys"][doc["currentKeyID"]])
        if doc.get("rekeyMasterKeyAsyncResultID") is not None:
            out["rekeyMasterKeyAsyncResultID"] = doc["rekeyMasterKeyAsyncResultID"]
        return out

