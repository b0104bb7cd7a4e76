"""Input that is valid JSON to Python but not text or numbers to anyone else: lone surrogates
(``"\\ud800"``), NaN and Infinity, NUL bytes in credentials, hostnames that are not hostnames.
Each must be refused where it enters, naming the parameter, with nothing changed; none may
surface later as an unexpected error or as a listing strict JSON clients cannot read."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from sealbox.cluster.keyservers import _is_host
from tests.support.proc import SealboxProcess


def _strict(text: str) -> Any:
    """Parse as a strict JSON client would (no NaN or Infinity)."""
    def refuse(word: str) -> Any:
        raise ValueError(f"{word} in a response")
    return json.loads(text, parse_constant=refuse)


def _raw(sealbox: SealboxProcess, body: str, auth: tuple[str, str] | None = None,
         ) -> dict[str, Any]:
    response = sealbox.post(body, auth=auth)
    assert response.status_code == 200, response.text
    envelope: dict[str, Any] = _strict(response.text)
    return envelope


def _error(sealbox: SealboxProcess, method: str, params: dict[str, Any]) -> dict[str, Any]:
    # json.dumps writes a lone surrogate as the \ud800 escape a client would send
    envelope = _raw(sealbox, json.dumps({"method": method, "params": params, "id": 7}))
    assert "error" in envelope, envelope
    error: dict[str, Any] = envelope["error"]
    return error


def _state(sealbox: SealboxProcess) -> list[Any]:
    return [sealbox.rpc(m)["result"] for m in
            ("ListClusterAdmins", "ListVolumes", "ListAccounts", "ListKeyServersKmip")]


@pytest.fixture(scope="module")
def account(sealbox: SealboxProcess) -> int:
    account_id: int = sealbox.rpc("AddAccount", {"username": "tenant-text"})["result"][
        "accountID"]
    return account_id


@pytest.mark.parametrize(("method", "params", "named"), [
    ("AddClusterAdmin", {"username": "u1", "password": "\ud800-long-enough",
                         "access": ["read"], "acceptEula": True}, "password"),
    ("AddClusterAdmin", {"username": "u2", "password": "long-enough-2", "access": ["read"],
                         "acceptEula": True, "attributes": {"\udfff": 1}}, "attributes"),
    ("CreateVolume", {"name": "v-text", "accountID": "ACCOUNT", "totalSize": 1 << 30,
                      "attributes": {"note": ["ok", "\ud83d"]}}, "attributes"),
    ("AddAccount", {"username": "tenant-\ud800"}, "username"),
    ("CreateKeyProviderKmip", {"keyProviderName": "p\ud800"}, "keyProviderName"),
])
def test_lone_surrogates_are_refused_naming_the_parameter(
        sealbox: SealboxProcess, account: int, method: str, params: dict[str, Any],
        named: str) -> None:
    if params.get("accountID") == "ACCOUNT":
        params = dict(params, accountID=account)
    before = _state(sealbox)
    error = _error(sealbox, method, params)
    assert error["name"] == "xInvalidParameter", error
    assert f"'{named}'" in error["message"] and "surrogate" in error["message"]
    assert _state(sealbox) == before


def test_nan_and_infinity_are_not_json(sealbox: SealboxProcess, account: int) -> None:
    before = _state(sealbox)
    for body in [
        '{"method": "GetAPI", "params": {}, "id": NaN}',
        '{"method": "GetAPI", "params": {}, "id": 1e400}',
        '{"method": "AddAccount", "params": {"username": "t-inf", "attributes": '
        '{"x": -1e999}}, "id": 1}',
        '{"method": "CreateVolume", "params": {"name": "v-nan", "accountID": ACCOUNT, '
        '"totalSize": 1073741824, "attributes": {"a": Infinity}}, "id": 1}'.replace(
            "ACCOUNT", str(account)),
        '{"method": "AddClusterAdmin", "params": {"username": "u3", "password": '
        '"long-enough-3", "access": ["read"], "acceptEula": true, "attributes": '
        '{"a": -Infinity}}, "id": 1}',
    ]:
        envelope = _raw(sealbox, body)  # the answer itself is strict JSON
        assert envelope["error"]["name"] == "xInvalidRequest", envelope
        assert "not valid JSON" in envelope["error"]["message"]
    assert _state(sealbox) == before


def test_huge_attributes_are_refused(sealbox: SealboxProcess, account: int) -> None:
    before = _state(sealbox)
    error = _error(sealbox, "CreateVolume", {"name": "v-huge", "accountID": account,
                                             "totalSize": 1 << 30,
                                             "attributes": {"k" * 100_000: 1}})
    assert error["name"] == "xInvalidParameter" and "'attributes'" in error["message"]
    assert _state(sealbox) == before


def test_a_password_with_a_trailing_nul_does_not_log_in(sealbox: SealboxProcess) -> None:
    def status(password: str) -> int:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        response = requests.post(
            f"https://127.0.0.1:{sealbox.port}/json-rpc/12.3", verify=False, timeout=30,
            data=json.dumps({"method": "GetClusterInfo", "params": {}, "id": 1}),
            headers={"Authorization": f"Basic {token}"})
        return response.status_code
    assert status(sealbox.password) == 200
    assert status(sealbox.password + "\x00") == 401
    assert status(sealbox.password + "\x00\x00\x00") == 401


@pytest.mark.parametrize("host", [
    "h\x00ost", "\x01\x02", "\u202e", "\u200b", "host:99", "[::1]", "999.999.999.999", "-bad-",
    "a..b", "x" * 64 + ".example", "\ud800",
])
def test_kmip_hostnames_that_are_not_hosts_are_refused(sealbox: SealboxProcess,
                                                       host: str) -> None:
    if "result" not in sealbox.rpc("GetClientCertificateSignRequest"):
        sealbox.rpc("CreatePublicPrivateKeyPair")  # key servers need the cluster's key pair
    before = _state(sealbox)
    error = _error(sealbox, "CreateKeyServerKmip", {
        "kmipCaCertificate": "-----BEGIN CERTIFICATE-----", "kmipClientCertificate": "x",
        "kmipKeyServerHostnames": ["kms.example", host], "kmipKeyServerName": "ks-text"})
    assert error["name"] == "xInvalidParameter", error
    assert "'kmipKeyServerHostnames[1]'" in error["message"], error
    assert _state(sealbox) == before


@pytest.mark.parametrize("host", [
    "127.0.0.1", "::1", "kms", "kms.example.com", "kms.example.com.", "10-0-0-1.example",
    "xn--bcher-kva.example", "a" * 63 + ".example",
])
def test_real_hostnames_and_addresses_pass(host: str) -> None:
    assert _is_host(host)


def test_the_csr_carries_every_subject_field_and_bad_ones_are_named(
        sealbox: SealboxProcess) -> None:
    sealbox.rpc("CreatePublicPrivateKeyPair", {
        "commonName": "array-1", "organization": "Example", "organizationalUnit": "Storage",
        "locality": "Sunnyvale", "state": "California", "country": "us",
        "emailAddress": "storage@example.com"})
    csr_b64 = sealbox.rpc("GetClientCertificateSignRequest")["result"][
        "clientCertificateSignRequest"]
    subject = x509.load_der_x509_csr(base64.b64decode(csr_b64)).subject
    got = {attr.oid: attr.value for attr in subject}
    assert got[NameOID.LOCALITY_NAME] == "Sunnyvale"
    assert got[NameOID.STATE_OR_PROVINCE_NAME] == "California"
    assert got[NameOID.COUNTRY_NAME] == "US"
    assert got[NameOID.EMAIL_ADDRESS] == "storage@example.com"
    for params, named in [
        ({"organization": "\ud800"}, "organization"),
        ({"country": "USA"}, "country"),
        ({"country": "\u00c4\u00d6"}, "country"),
        ({"emailAddress": "no-at-sign"}, "emailAddress"),
        ({"commonName": " "}, "commonName"),
    ]:
        error = _error(sealbox, "CreatePublicPrivateKeyPair", params)
        assert error["name"] == "xInvalidParameter", (params, error)
        assert f"'{named}'" in error["message"], (params, error)
    # the key pair made above is still the one whose CSR is served
    assert sealbox.rpc("GetClientCertificateSignRequest")["result"][
        "clientCertificateSignRequest"] == csr_b64
