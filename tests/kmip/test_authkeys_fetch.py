"""AuthKeys.fetch_all over several connections to a real PyKMIP server: every key comes back,
each Get is sent once, a refused key marks only its drive invalid, and an unreachable server
fails the drives at once (bench/boot.py measures the speed of the same path). Also: a planned
record left by a crash around the Register destroys the key it names, if there is one."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from sealbox.cluster import authkeys
from sealbox.cluster.audit import AuditLog
from sealbox.cluster.authkeys import AkInvalid, AkUnavailable, AuthKeys
from sealbox.cluster.keyservers import PROVIDERS, SERVERS, KeyServerStore, ServerChange, Timeouts
from sealbox.cluster.trust import TrustService
from sealbox.kmip import KmipEndpoint, ProviderClient
from sealbox.kmip.certs import KeyType, Subject
from sealbox.kmip.errors import KmipError
from sealbox.kms import server as kms_server
from sealbox.kms.testing import RunningKms, closed_port
from sealbox.secrets import Secret
from sealbox.store.base import Doc
from sealbox.store.sqlite import SqliteStore

DRIVES = 12


@dataclass
class Keys:
    aks: AuthKeys
    store: SqliteStore
    keyservers: KeyServerStore
    provider_id: int
    server_id: int
    records: dict[int, Doc]
    secrets: dict[int, Secret]


@pytest.fixture(scope="module")
def keys(kms: RunningKms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """A provider on the key server, as the API makes one, and DRIVES registered AKs."""
    data = tmp_path_factory.mktemp("cluster")
    store = SqliteStore(data / "sealbox.db")
    trust = TrustService(store, data / "keys", KeyType.RSA_2048)
    trust.create_key_pair(Subject("sealbox-fetch-test"), [])
    cert = kms_server.sign_csr(kms.directory, trust.csr()).decode()
    keyservers = KeyServerStore(store, trust, Timeouts(connect=1.0, operation=3.0))
    with store.write() as txn:
        server = keyservers.new_server(txn, ServerChange(
            name="ks", hostnames=["127.0.0.1"], port=kms.port, ca_pem=kms.ca_pem.decode(),
            client_cert_pem=cert))
        provider = keyservers.new_provider(txn, "p")
        server["keyProviderID"] = provider["keyProviderID"]
        provider["keyServerIDs"] = [server["keyServerID"]]
        txn.put(SERVERS, server["keyServerID"], server)
        txn.put(PROVIDERS, provider["keyProviderID"], provider)
    aks = AuthKeys(store, data / "keys" / "ak", keyservers, AuditLog(store))
    records, secrets = {}, {}
    for drive_id in range(1, DRIVES + 1):
        planned = aks.plan(provider["keyProviderID"])
        records[drive_id], secrets[drive_id] = aks.create(drive_id, planned)
    yield Keys(aks, store, keyservers, provider["keyProviderID"], server["keyServerID"],
               records, secrets)
    store.close()


@pytest.fixture
def counted_gets(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every Get sent through a provider, by object UID (``messages`` counts the KMIP
    messages); three connections for 12 keys, four Gets per message."""
    monkeypatch.setattr(authkeys, "FETCH_CONNECTIONS", 3)
    monkeypatch.setattr(authkeys, "KEYS_PER_CONNECTION", 1)
    monkeypatch.setattr(authkeys, "GETS_PER_MESSAGE", 4)
    sent: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = ProviderClient.get_many

    def get_many(self: ProviderClient, uids: Sequence[str]) -> list[Secret | KmipError]:
        with lock:
            sent.update(uids)
            sent["messages"] += 1
        return original(self, uids)

    monkeypatch.setattr(ProviderClient, "get_many", get_many)
    return sent


def test_every_key_fetched_once_over_several_connections(
        keys: Keys, counted_gets: collections.Counter[str]) -> None:
    connections = collections.Counter[int]()  # provider clients made, by thread
    original = ProviderClient.__init__

    def init(self: ProviderClient, endpoints: Sequence[KmipEndpoint]) -> None:
        connections[threading.get_ident()] += 1
        original(self, endpoints)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ProviderClient, "__init__", init)
        out = keys.aks.fetch_all(keys.records)
    assert not out.invalid and not out.unavailable
    assert {i: k.reveal() for i, k in out.keys.items()} == {
        i: s.reveal() for i, s in keys.secrets.items()}
    messages = counted_gets.pop("messages")
    assert counted_gets == {rec["kmipUID"]: 1 for rec in keys.records.values()}
    assert messages == DRIVES // 4  # batched: four Gets per KMIP message
    assert sum(connections.values()) == 3 and len(connections) == 3  # one per worker thread


def test_a_destroyed_key_marks_only_its_drive_invalid(
        keys: Keys, counted_gets: collections.Counter[str]) -> None:
    rec, _ = keys.aks.create(99, keys.aks.plan(keys.provider_id))
    keys.aks.destroy(99, rec)
    records = {**keys.records, 99: rec}
    out = keys.aks.fetch_all(records)
    assert set(out.invalid) == {99} and isinstance(out.invalid[99], AkInvalid)
    assert not out.unavailable
    assert set(out.keys) == set(keys.records)
    counted_gets.pop("messages")
    assert counted_gets == {r["kmipUID"]: 1 for r in records.values()}


def test_an_unreachable_server_fails_every_drive_at_once(
        keys: Keys, counted_gets: collections.Counter[str]) -> None:
    with keys.store.write() as txn:
        server = txn.get(SERVERS, keys.server_id)
        assert server is not None
        txn.put(SERVERS, keys.server_id, {**server, "port": closed_port()})
    try:
        out = keys.aks.fetch_all(keys.records)
    finally:
        with keys.store.write() as txn:
            txn.put(SERVERS, keys.server_id, server)
    assert set(out.unavailable) == set(keys.records)
    assert all(isinstance(e, AkUnavailable) for e in out.unavailable.values())
    assert not out.keys and not out.invalid
    # Each connection learns the server is gone on its first message; the rest are not sent.
    assert counted_gets["messages"] <= 3


def test_a_planned_record_destroys_the_key_registered_under_its_name(keys: Keys) -> None:
    planned = keys.aks.plan(keys.provider_id)
    assert planned["kmipUID"] is None and planned["management"] == authkeys.EXTERNAL
    made, _ = keys.aks.create(100, planned)  # the process died before recording ``made``
    assert keys.aks.fetch(made)  # the key is on the server, named by the planned record
    keys.aks.destroy(100, planned)
    with pytest.raises(AkInvalid):
        keys.aks.fetch(made)
    audit = [e for e in AuditLog(keys.store).entries() if planned["keyID"] in e["detail"]]
    assert [e["method"] for e in audit] == ["kmip.RegisterAuthenticationKey",
                                            "kmip.DestroyAuthenticationKey"]


def test_a_planned_record_whose_register_never_happened_destroys_nothing(keys: Keys) -> None:
    planned = keys.aks.plan(keys.provider_id)
    keys.aks.destroy(101, planned)  # nothing under that name: no error, nothing recorded
    assert not [e for e in AuditLog(keys.store).entries() if planned["keyID"] in e["detail"]]
    assert set(keys.aks.fetch_all(keys.records).keys) == set(keys.records)
