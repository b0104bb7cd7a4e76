"""The key-server side of a rekey: creating, naming, finding and destroying master keys.

External master keys are named ``sealbox-mk-<keyID>`` on the key server, so that a key created
just before a crash (before its identifier could be recorded) can still be found and destroyed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sealbox.cluster.audit import AuditLog
from sealbox.cluster.jobs import JobStopped
from sealbox.cluster.keyservers import KeyServerStore
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.sear import COLL as SEAR
from sealbox.cluster.sear import EXTERNAL, INTERNAL, key_record
from sealbox.errors import SealboxError
from sealbox.store.base import ConfigStore, Doc, Txn

USE = "software encryption master key"
log = logging.getLogger("sealbox.rekey")


def kmip_name(key_id: str) -> str:
    return f"sealbox-mk-{key_id}"


def create_key(store: ConfigStore, keys: MasterKeys, rk: Doc, pause: Callable[[], None]) -> Doc:
    """Make the new master key and return its record (identifiers only)."""
    new_id = rk["newKeyID"]
    if rk["management"] == INTERNAL:
        # The internal store names its keys itself; a file made just before a crash is found
        # at rollback as one that no record refers to.
        return key_record(keys.internal.create(), INTERNAL)
    with keys.provider_client(rk["providerID"]) as client:
        uid = client.create_symmetric_key(kmip_name(new_id))
        pause()  # (test-only) a crash here leaves a named key that rollback must find
        keys.remember(new_id, client.get(uid))
    return key_record(new_id, EXTERNAL, rk["providerID"], uid)


def destroy_key(keys: MasterKeys, rec: Doc, audit: AuditLog, who: str) -> None:
    """Decommission the master key of record ``rec``: Revoke and Destroy on its key server (a
    key already gone counts as done), or overwrite and delete the internal key file. Raises the
    KMIP error; the caller decides how often to try (:mod:`sealbox.cluster.rekey_decommission`).
    """
    key_id = rec["keyID"]
    if rec["keyManagementType"] == EXTERNAL:
        with keys.provider_client(rec["keyProviderID"]) as client:
            client.revoke_and_destroy(rec["kmipUID"])
    else:
        keys.internal.delete(key_id)
    audit.record(who, "kmip.DestroyMasterKey" if rec["keyManagementType"] == EXTERNAL
                 else "DestroyInternalMasterKey", [], "success",
                 f"keyID={key_id} provider={rec['keyProviderID']}")


def retrying(step: Callable[[], None], what: str, closing: threading.Event) -> None:
    """Run ``step`` until it succeeds: a key server that is down now will be back. If sealbox
    stops first, :class:`JobStopped`: the job stays running and resumes at the next start."""
    delay = 1.0
    while True:
        try:
            step()
            return
        except SealboxError as e:
            log.warning("cannot %s yet: %s", what, e.message)
            if closing.wait(delay):
                raise JobStopped(f"sealbox is stopping; cannot {what} yet: {e.message}") from e
            delay = min(delay * 2, 30.0)


def destroy_new_key(store: ConfigStore, keys: MasterKeys, rk: Doc, audit: AuditLog,
                    closing: threading.Event) -> None:
    """Rollback: destroy the new key, recorded or not; retries while the key server is down."""
    with store.read() as txn:
        doc = txn.get(SEAR, 0) or {}
    known = {k for k in doc.get("keys", {}) if k != rk["newKeyID"]}
    retrying(lambda: _destroy_new(keys, rk, known), f"destroy new key {rk['newKeyID']}",
             closing)
    audit.record("sealbox", "RollbackRekey", [], "success", f"keyID={rk['newKeyID']}")


def _destroy_new(keys: MasterKeys, rk: Doc, known: set[str]) -> None:
    if rk["management"] == INTERNAL:
        for key_id in keys.internal.ids():
            if key_id not in known or key_id == rk["newKeyID"]:
                keys.internal.delete(key_id)
        return
    rec = keys.record(rk["newKeyID"])
    with keys.provider_client(rk["providerID"]) as client:
        uids = client.locate(name=kmip_name(rk["newKeyID"]))
        if rec is not None and rec["kmipUID"] not in uids:
            uids.append(rec["kmipUID"])
        for uid in uids:
            client.revoke_and_destroy(uid)


def release_provider(keyservers: KeyServerStore, txn: Txn, doc: Doc, old: Doc | None) -> None:
    """The old key's provider is inactive once no current key comes from it."""
    if old is None or old["keyManagementType"] != EXTERNAL:
        return
    still = any(k["keyProviderID"] == old["keyProviderID"] for k in doc["keys"].values())
    if not still:
        keyservers.release(txn, old["keyProviderID"], USE)


def _describe(rec: Doc) -> str:
    if rec["keyManagementType"] == EXTERNAL:
        return f"External Key Management with keyProviderID={rec['keyProviderID']}"
    return "Internal Key Management"


def operation_text(old: Doc, new: Doc) -> str:
    before, after = _describe(old), _describe(new)
    if before == after:
        return f"Rekeying Master Key. Master Key management remains {after}"
    return f"Rekeying Master Key. Master Key management being transferred from {before} to {after}"


def operation(store: ConfigStore, rk: Doc) -> str:
    with store.read() as txn:
        doc = txn.get(SEAR, 0) or {}
    old = doc.get("keys", {}).get(rk["oldKeyID"]) or {"keyManagementType": INTERNAL}
    new = {"keyManagementType": rk["management"], "keyProviderID": rk["providerID"]}
    return operation_text(old, new)
