"""The HTTP contract the official clients depend on (TRANSPORT.md)."""

from __future__ import annotations

import base64

import pytest
import requests
from solidfire.common import ApiConnectionError, ApiServerError
from solidfire.factory import ElementFactory

from tests.support.proc import SealboxProcess


def test_wrong_password_is_bad_credentials(sealbox: SealboxProcess) -> None:
    with pytest.raises(ApiConnectionError) as err:
        ElementFactory.create("127.0.0.1", "admin", "wrong-password", port=sealbox.port,
                              print_ascii_art=False)
    assert "Bad Credentials" in str(err.value)


def _basic(text: bytes) -> str:
    return "Basic " + base64.b64encode(text).decode()


@pytest.mark.parametrize(
    "auth", [None, "Basic !!!", _basic(b"nocolon"), "Bearer x", _basic(b"ghost:pw"),
             _basic(b"admin:wrong")],
)
def test_missing_or_bad_auth_is_401(sealbox: SealboxProcess, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    r = requests.post(f"{sealbox.url}", data='{"method":"GetAPI","params":{}}', headers=headers,
                      verify=False, timeout=10)
    assert r.status_code == 401
    assert "401 Unauthorized." in r.text


def test_unknown_method(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    with pytest.raises(ApiServerError) as err:
        sf.send_request("NoSuchMethod", dict, {})
    assert err.value.error_name == "xUnknownAPIMethod"
    assert "NoSuchMethod" in err.value.message


@pytest.mark.parametrize("path", ["/json-rpc/99.0", "/json-rpc/abc", "/", "/api", "/json-rpc"])
def test_unknown_paths_and_versions_are_404(sealbox: SealboxProcess, path: str) -> None:
    r = requests.post(f"https://127.0.0.1:{sealbox.port}{path}", data="{}",
                      auth=("admin", sealbox.password), verify=False, timeout=10)
    assert r.status_code == 404
    assert "404 Not Found" in r.text


@pytest.mark.parametrize("version", ["1.0", "7.0", "7", "11.7", "12.3", "12.3/"])
def test_supported_versions_answer(sealbox: SealboxProcess, version: str) -> None:
    env = sealbox.rpc("GetAPI", version=version)
    assert env["result"]["currentVersion"] == "12.3"
    assert all(isinstance(v, str) for v in env["result"]["supportedVersions"])


def test_pinned_version_connects(sealbox: SealboxProcess) -> None:
    sf = ElementFactory.create("127.0.0.1", "admin", sealbox.password, port=sealbox.port,
                               version="11.7", print_ascii_art=False)
    assert sf.get_cluster_info().cluster_info.name == "sealbox"


def test_no_content_type_needed_and_method_case_insensitive(sealbox: SealboxProcess) -> None:
    r = sealbox.post('{"method": "getclusterinfo", "id": 7, "params": {}}')
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["id"] == 7 and body["result"]["clusterInfo"]["name"] == "sealbox"


def test_params_may_be_absent_or_null(sealbox: SealboxProcess) -> None:
    assert "result" in sealbox.post('{"method": "ListDrives"}').json()
    assert "result" in sealbox.post('{"method": "ListDrives", "params": null}').json()


def test_ids_accepted_as_numeric_strings(sealbox: SealboxProcess) -> None:
    env = sealbox.rpc("GetAsyncResult", {"asyncHandle": "424242"})
    assert env["error"]["name"] == "xDBNoSuchPath"  # parsed as the integer 424242
    env = sealbox.rpc("GetAsyncResult", {"asyncHandle": "4x"})
    assert env["error"]["name"] == "xInvalidParameter"
    assert "asyncHandle" in env["error"]["message"]


def test_errors_are_http_200_element_objects(sealbox: SealboxProcess) -> None:
    for body in ("not json", "[1,2]", '{"params": {}}', '{"method": 5}'):
        r = sealbox.post(body)
        assert r.status_code == 200
        err = r.json()["error"]
        assert err["code"] == 500 and err["name"].startswith("x") and err["message"]


def test_missing_required_names_the_parameter(sealbox: SealboxProcess) -> None:
    env = sealbox.rpc("AddClusterAdmin", {"username": "bob", "access": ["read"],
                                           "acceptEula": True})
    assert env["error"]["name"] == "xMissingParameter"
    assert "password" in env["error"]["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-unknown"])
@pytest.mark.parametrize("body", [b"garbage", b'{"method": "GetAPI", "params": {}, "id": 1}'])
def test_encoded_bodies_are_refused_as_element_errors(sealbox: SealboxProcess, encoding: str,
                                                      body: bytes) -> None:
    """A body that does not inflate once answered HTTP 500 (gzip) or a 400 naming a missing
    Python package (br); every Content-Encoding is now an Element error naming it."""
    r = requests.post(f"https://127.0.0.1:{sealbox.port}/json-rpc/12.3", data=body,
                      auth=("admin", sealbox.password), verify=False, timeout=30,
                      headers={"Content-Encoding": encoding})
    assert r.status_code == 200, r.text
    err = r.json()["error"]
    assert err["name"] == "xInvalidRequest" and encoding in err["message"]
    assert "Traceback" not in r.text and "install" not in r.text


def test_identity_encoding_is_plain_json(sealbox: SealboxProcess) -> None:
    r = requests.post(f"https://127.0.0.1:{sealbox.port}/json-rpc/12.3",
                      data=b'{"method": "GetAPI", "params": {}, "id": 1}',
                      auth=("admin", sealbox.password), verify=False, timeout=30,
                      headers={"Content-Encoding": "identity"})
    assert r.status_code == 200 and "result" in r.json()
