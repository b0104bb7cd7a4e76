"""Drive authentication keys (AKs): made, kept, fetched and destroyed.

One AK per self-encrypting drive: 32 random bytes. Where it lives:

* **external** (EnableEncryptionAtRest with a key provider): a KMIP *Secret Data* object on the
  provider's key server, registered and activated, named ``sealbox-ak-<keyID>``. The cluster
  keeps only the identifiers (``kmipUID``, the provider, a ``keyID`` UUID) next to the drive.
* **internal** (no provider): in the configuration store, wrapped (RFC 5649) under a key
  encryption key that is a 0600 file in the data dir (``keys/ak``), so that the database alone
  does not open the drives.

The record (the drive document's ``ak`` field) never holds key bytes in the clear. AKs are
fetched when needed (boot, disable, erase) and not kept in memory afterwards.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from sealbox.cluster.audit import AuditLog
from sealbox.cluster.clock import now_iso
from sealbox.cluster.keyservers import KeyServerStore
from sealbox.errors import SealboxError
from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.errors import KmipObjectNotFound, KmipOperationFailed
from sealbox.kmip.provider import ProviderClient
from sealbox.secrets import Secret
from sealbox.storage.keysource import InternalKeyStore, MasterKeyUnavailable
from sealbox.storage.keywrap import unwrap_key, wrap_key
from sealbox.store.base import ConfigStore, Doc

INTERNAL = "internal"
EXTERNAL = "external"
AK_SIZE = 32
# Boot fetches AKs over this many connections at once, so that the key server works on one
# Get while the client sends or parses another. Two, because PyKMIP answers each connection
# in its own thread but runs every request under one engine lock: more connections only add
# handshakes and thread switching (bench/boot.py, 256 drives, 10 rounds on the busy 2-CPU
# machine: 0.88x the one-connection floor with 2, 0.95x with 3, 0.98x with 4).
FETCH_CONNECTIONS = 2
# Gets sent in one KMIP message (batch items, KmipClient.get_many): a key server's cost is
# mostly per message, so a batch of Gets costs little more than one.
GETS_PER_MESSAGE = 32
# ...and one more connection only per this many keys: a TLS handshake costs a few messages.
KEYS_PER_CONNECTION = 2 * GETS_PER_MESSAGE
log = logging.getLogger("sealbox.ear")


class AkUnavailable(SealboxError):
    """The key store could not be asked (unreachable, TLS, timeout): retry later."""

    element_name = "xAuthenticationKeyUnavailable"


class AkInvalid(SealboxError):
    """The key store answered, and the drive's AK is not there (destroyed, replaced, refused)."""

    element_name = "xAuthenticationKeyInvalid"


@dataclass
class Fetched:
    """The outcome of fetching many drives' AKs."""

    keys: dict[int, Secret] = field(default_factory=dict)
    invalid: dict[int, AkInvalid] = field(default_factory=dict)
    unavailable: dict[int, AkUnavailable] = field(default_factory=dict)


def kmip_name(key_id: str) -> str:
    return f"sealbox-ak-{key_id}"


def _classify(error: SealboxError, what: str) -> SealboxError:
    """A KMIP answer about the object means the key is invalid; anything else (connection,
    TLS, timeout, protocol) means the server could not be asked."""
    if isinstance(error, KmipObjectNotFound | KmipOperationFailed):
        return AkInvalid(f"{what}: the key server refused it ({error.message})")
    return AkUnavailable(f"{what}: {error.message}")


class AuthKeys:
    def __init__(self, store: ConfigStore, keys_dir: Path, keyservers: KeyServerStore,
                 audit: AuditLog) -> None:
        self._store = store
        self._kek_store = InternalKeyStore(keys_dir)
        self._keyservers = keyservers
        self._audit = audit
        self._lock = threading.Lock()

    # --- internal key encryption key ------------------------------------------------------
    def _kek(self) -> Secret:
        """The internal AK wrapping key, created on first use."""
        with self._lock:
            ids = self._kek_store.ids()
            kek_id = ids[0] if ids else self._kek_store.create()
            return self._kek_store.get(kek_id)

    def _client(self, provider_id: int) -> ProviderClient:
        return ProviderClient(self._endpoints(provider_id))

    def _endpoints(self, provider_id: int) -> list[KmipEndpoint]:
        with self._store.read() as txn:
            return self._keyservers.provider_endpoints(txn, provider_id)

    # --- create ---------------------------------------------------------------------------
    def plan(self, provider_id: int | None) -> Doc:
        """The record of a drive's next AK, before the AK exists anywhere: its ``keyID`` (so
        its name on a key server) is chosen here. For an external AK the caller records this
        durably before :meth:`create` registers the key, so that a crash in between leaves a
        record that finds the key by name (:meth:`destroy`), never a key no record names."""
        return {"keyID": str(uuid.uuid4()), "created": now_iso(), "providerID": provider_id,
                "kmipUID": None, "wrapped": None,
                "management": INTERNAL if provider_id is None else EXTERNAL}

    def create(self, drive_id: int, planned: Doc) -> tuple[Doc, Secret]:
        """Make the AK a :meth:`plan` record names: the record completed, and the key.
        External keys are on the key server (registered and active) when this returns.
        Raises the KMIP error as is."""
        ak = Secret(os.urandom(AK_SIZE))
        rec = dict(planned)
        key_id, provider_id = rec["keyID"], rec["providerID"]
        if rec["management"] == INTERNAL:
            rec["wrapped"] = base64.b64encode(wrap_key(self._kek(), ak)).decode()
        else:
            with self._client(provider_id) as client:
                rec["kmipUID"] = client.register_secret_data(ak, kmip_name(key_id))
            self._audit.record("sealbox", "kmip.RegisterAuthenticationKey", [], "success",
                               f"drive={drive_id} keyID={key_id} provider={provider_id}")
        return rec, ak

    # --- fetch ----------------------------------------------------------------------------
    def fetch(self, rec: Doc) -> Secret:
        """One drive's AK. Raises :class:`AkInvalid` or :class:`AkUnavailable`."""
        result = self.fetch_all({0: rec})
        if 0 in result.keys:
            return result.keys[0]
        raise (result.invalid.get(0) or result.unavailable[0])

    def fetch_all(self, records: Mapping[int, Doc]) -> Fetched:
        """Every drive's AK: internal ones unwrapped here, external ones fetched from each
        provider over a few long-lived connections at once. When a key server cannot be
        reached, the drives not yet fetched from it are reported unavailable at once, not
        each after its own timeout."""
        out = Fetched()
        by_provider: dict[int, list[tuple[int, Doc]]] = {}
        for drive_id, rec in records.items():
            if rec["management"] == INTERNAL:
                self._unwrap_internal(drive_id, rec, out)
            else:
                by_provider.setdefault(rec["providerID"], []).append((drive_id, rec))
        for provider_id, items in by_provider.items():
            self._fetch_external(provider_id, items, out)
        if by_provider:
            self._audit.record(
                "sealbox", "kmip.GetAuthenticationKeys", [],
                "success" if not (out.invalid or out.unavailable) else "error",
                f"fetched={len(out.keys)} invalid={sorted(out.invalid)} "
                f"unavailable={len(out.unavailable)}")
        return out

    def _unwrap_internal(self, drive_id: int, rec: Doc, out: Fetched) -> None:
        try:
            kek = self._kek()
        except MasterKeyUnavailable as e:
            out.unavailable[drive_id] = AkUnavailable(
                f"the internal authentication key store is unavailable: {e.message}")
            return
        try:
            out.keys[drive_id] = unwrap_key(kek, base64.b64decode(rec["wrapped"]))
        except SealboxError:
            out.invalid[drive_id] = AkInvalid(
                f"authentication key {rec['keyID']} of drive {drive_id} does not unwrap")

    def _fetch_external(self, provider_id: int, items: list[tuple[int, Doc]],
                        out: Fetched) -> None:
        # Workers take the next drive from one shared queue, not fixed shares: on a busy
        # machine one connection can stall, and the boot lasts as long as the last Get. A
        # connection costs a TLS handshake, so small fetches open fewer.
        workers = max(1, min(FETCH_CONNECTIONS, -(-len(items) // KEYS_PER_CONNECTION)))
        # The endpoints are read here, once: a store read in each worker would open (and
        # keep, until the store closes) a database connection per worker thread.
        try:
            endpoints = self._endpoints(provider_id)
        except SealboxError as e:
            for drive_id, _ in items:
                out.unavailable[drive_id] = AkUnavailable(e.message)
            return
        queue = iter(items)
        take = threading.Lock()
        stop = threading.Event()
        why: list[str] = []  # why the fetch stopped (the first failure), for the drives left

        def pop() -> list[tuple[int, Doc]]:
            with take:
                return list(islice(queue, GETS_PER_MESSAGE))

        def give_up(message: str) -> None:
            with take:
                why.append(message)
            stop.set()

        def fail_rest() -> None:
            # The server is gone for everyone: the drives left fail now, not each after its
            # own timeout.
            while batch := pop():
                for drive_id, _ in batch:
                    out.unavailable[drive_id] = AkUnavailable(why[0])

        def run() -> None:
            try:
                client = ProviderClient(endpoints)
            except SealboxError as e:
                give_up(e.message)
                fail_rest()
                return
            with client:
                while not stop.is_set() and (batch := pop()):
                    try:
                        answers = client.get_many([rec["kmipUID"] for _, rec in batch])
                    except SealboxError as e:
                        for drive_id, _ in batch:
                            out.unavailable[drive_id] = AkUnavailable(e.message)
                        give_up(f"key provider {provider_id} is unreachable ({e.message})")
                        break
                    for (drive_id, rec), answer in zip(batch, answers, strict=True):
                        if isinstance(answer, Secret):
                            out.keys[drive_id] = answer
                            continue
                        what = f"authentication key {rec['keyID']} of drive {drive_id}"
                        err = _classify(answer, what)
                        if isinstance(err, AkInvalid):
                            out.invalid[drive_id] = err
                        else:
                            out.unavailable[drive_id] = AkUnavailable(err.message)
            if stop.is_set():
                fail_rest()

        if workers == 1:
            run()
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ak-fetch") as pool:
            for done in [pool.submit(run) for _ in range(workers)]:
                done.result()

    # --- destroy --------------------------------------------------------------------------
    def destroy(self, drive_id: int, rec: Doc) -> None:
        """Revoke and destroy an external AK (already gone is fine); an internal one has
        nothing outside its record, which the caller deletes. A record without a ``kmipUID``
        (planned, and the process stopped around the Register) destroys whatever the key
        server holds under the key's name: nothing, or the key registered just before."""
        if rec["management"] != EXTERNAL:
            return
        with self._client(rec["providerID"]) as client:
            uids = [rec["kmipUID"]] if rec["kmipUID"] else client.locate(
                name=kmip_name(rec["keyID"]))
            gone = [uid for uid in uids if client.revoke_and_destroy(uid)]
        if gone:  # not again for a repeated destroy
            self._audit.record(
                "sealbox", "kmip.DestroyAuthenticationKey", [], "success",
                f"drive={drive_id} keyID={rec['keyID']} provider={rec['providerID']}")
