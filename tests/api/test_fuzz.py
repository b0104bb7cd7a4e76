"""Bad input against a real ``sealbox up``: every answer is a clean Element error or a result,
and an error never changes the cluster's configuration.

Every method of the registry gets wrong types for each declared parameter, missing required
parameters, 1 MB strings, odd IDs, nested junk and unknown extras; the request envelope itself
gets non-JSON bodies, non-object params and non-string method names. The configuration is the
``docs`` and ``counters`` tables of ``sealbox.db`` (read through a read-only connection), minus
the ``audit`` collection, which records failed calls by design.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbox.api.params import P
from sealbox.api.registry import Method, load_all
from sealbox.errors import SealboxError
from tests.support.proc import SealboxProcess, wait_until

METHODS: dict[str, Method] = dict(sorted(load_all().items()))
# Bounded for CI (the whole file runs in well under a minute on 2 cores) and derandomized, so
# a failure reproduces; every method still gets its own examples through the parametrization.
EXAMPLES_PER_METHOD = 30
EXAMPLES_PER_ENVELOPE_TEST = 60
FUZZ = settings(
    max_examples=EXAMPLES_PER_METHOD, deadline=None, derandomize=True, database=None,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
FUZZ_ENVELOPE = settings(FUZZ, max_examples=EXAMPLES_PER_ENVELOPE_TEST)
TRACEBACK_TEXT = ("Traceback", 'File "', '.py"')
MEGABYTE = "A" * (1 << 20)
ODD_IDS: list[Any] = ["1", "-1", "0", "abc", "1e3", " 7 ", "", 0, -1, 2**70, -(2**70), 2**63,
                      1.5, 1e3, True, False, None, [], {}, [1], {"id": 1}, MEGABYTE]


# --- the server and how to talk to it ---------------------------------------------------------
@pytest.fixture(scope="module")
def sealbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    """A cluster whose background checks run only at start: a check that changes the
    configuration while a bad request is answered must not look like the request's doing."""
    proc = SealboxProcess(tmp_path_factory.mktemp("fuzz") / "data", extra=[
        "--monitor-interval", "86400", "--key-check-interval", "86400"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(sealbox: SealboxProcess) -> Iterator[requests.Session]:
    """One keep-alive session, so that hundreds of calls do not each pay a TLS handshake."""
    with requests.Session() as s:
        s.auth = ("admin", sealbox.password)
        yield s


def post(sealbox: SealboxProcess, client: requests.Session, body: bytes) -> requests.Response:
    # verify=False per call: a session-wide setting loses to REQUESTS_CA_BUNDLE in the env.
    return client.post(sealbox.url, data=body, timeout=30, verify=False)


def snapshot(sealbox: SealboxProcess) -> dict[str, list[tuple[Any, ...]]]:
    """The configuration as stored, through a read-only connection (the WAL included)."""
    uri = f"file:{sealbox.data_dir / 'sealbox.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return {
            "docs": conn.execute(
                "SELECT coll, id, body FROM docs WHERE coll != 'audit' ORDER BY coll, id"
            ).fetchall(),
            "counters": conn.execute(
                "SELECT coll, last FROM counters WHERE coll != 'audit' ORDER BY coll"
            ).fetchall(),
        }
    finally:
        conn.close()


def quiet_snapshot(sealbox: SealboxProcess) -> dict[str, list[tuple[Any, ...]]]:
    """The configuration once no async job is running and encryption at rest is not
    switching: work started by an earlier valid call writes as it runs, which is not the
    error's doing."""

    def settled() -> dict[str, list[tuple[Any, ...]]] | None:
        snap = snapshot(sealbox)
        for coll, _id, body in snap["docs"]:
            if coll == "asyncresults" and json.loads(body).get("status") == "running":
                return None
            if coll == "ear" and json.loads(body)["state"] in ("enabling", "disabling"):
                return None
        return snap

    snap: dict[str, list[tuple[Any, ...]]] = wait_until(settled, 30, "async jobs to finish")
    return snap


def check_answer(resp: requests.Response, sent: bytes) -> dict[str, Any]:
    """The checks every answer must pass; returns the envelope."""
    shown = sent[:200]
    assert resp.status_code == 200, (shown, resp.status_code, resp.text[:300])
    envelope = resp.json()
    assert isinstance(envelope, dict), (shown, envelope)
    assert ("result" in envelope) != ("error" in envelope), (shown, resp.text[:300])
    if "error" in envelope:
        err = envelope["error"]
        assert err["code"] == 500, (shown, err)
        assert isinstance(err["name"], str) and err["name"].startswith("x"), (shown, err)
        assert isinstance(err["message"], str) and err["message"].strip(), (shown, err)
        for text in TRACEBACK_TEXT:
            assert text not in err["message"], (shown, err)
        # Bad input is the client's fault: a generic internal error means sealbox crashed on it.
        assert err["name"] != "xUnexpectedError", (shown, err)
    return envelope


def exchange(sealbox: SealboxProcess, client: requests.Session, body: bytes) -> dict[str, Any]:
    """Send one body; the answer passes :func:`check_answer` and an error changed nothing."""
    before = quiet_snapshot(sealbox)
    envelope = check_answer(post(sealbox, client, body), body)
    if "error" in envelope:
        after = snapshot(sealbox)
        assert after == before, (
            f"configuration changed after error {envelope['error']} for {body[:200]!r}"
        )
    return envelope


def request(method: Any, params: Any, req_id: Any = 1) -> bytes:
    return json.dumps({"method": method, "params": params, "id": req_id}).encode()


# --- strategies -------------------------------------------------------------------------------
def nested(depth: int, leaf: Any = 0) -> Any:
    """``depth`` levels of alternating lists and objects around ``leaf``."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=2**63 - 2, max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40), st.sampled_from([MEGABYTE, "\x00", "true", "null", "1e3", "٣"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
) | st.integers(min_value=50, max_value=400).map(nested)


CUSTOM_CANDIDATES: list[Any] = [1, "127.0.0.1", ["127.0.0.1"], {"driveID": 1}, True, {}]


def plausible(p: P) -> Any:
    """A value of the declared kind that passes validation (the method may still refuse it),
    so that a bad value of a later parameter is the one that gets reported."""
    if p.kind == "custom":
        one = next(c for c in CUSTOM_CANDIDATES if _converts(p, c))
    else:
        one = {
            "int": p.minimum if p.minimum is not None else 1,
            "str": p.choices[0] if p.choices else "x",
            "bool": True, "float": 1.0, "object": {},
        }[p.kind]
    return [one] if p.array else one


def _converts(p: P, raw: Any) -> bool:
    assert p.convert is not None
    try:
        p.convert(p.name, raw)
    except SealboxError:
        return False
    return True


def is_id(p: P) -> bool:
    """IDs, and other integers that must be positive (a port), which validate the same way."""
    named_like_an_id = re.search(r"(ID|IDs|Handle)$", p.name) is not None
    return (p.kind == "int" and p.minimum == 1) or named_like_an_id


def value_for(p: P) -> st.SearchStrategy[Any]:
    odd = st.sampled_from(ODD_IDS) if is_id(p) or p.kind == "int" else scalars
    wrong = st.one_of(odd, junk, st.lists(odd, max_size=3))
    return st.one_of(st.just(plausible(p)), wrong, wrong)


@st.composite
def params_for(draw: st.DrawFn, m: Method) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in m.params:
        if draw(st.integers(0, 3)) == 0:
            continue  # missing (required or not)
        out[p.name] = draw(value_for(p))
    extras = draw(st.dictionaries(st.text(min_size=1, max_size=12), junk, max_size=2))
    for key, value in extras.items():
        out.setdefault(key, value)
    return out


# --- every method, hypothesis-driven ----------------------------------------------------------
@pytest.mark.parametrize("name", list(METHODS))
@FUZZ
@given(data=st.data())
def test_bad_params_give_clean_errors_and_change_nothing(
    sealbox: SealboxProcess, client: requests.Session, name: str, data: st.DataObject
) -> None:
    m = METHODS[name]
    params = data.draw(params_for(m), label="params")
    spelled = data.draw(st.sampled_from([m.name, m.name.lower(), m.name.upper()]), label="name")
    req_id = data.draw(st.one_of(st.integers(), st.text(max_size=10), st.none()), label="id")
    envelope = exchange(sealbox, client, request(spelled, params, req_id))
    assert envelope["id"] == req_id


@FUZZ_ENVELOPE
@given(params=st.one_of(
    st.lists(junk, max_size=3), st.text(max_size=20), st.integers(), st.floats(allow_nan=False),
    st.booleans(),
), name=st.sampled_from(list(METHODS)))
def test_params_that_are_not_an_object(
    sealbox: SealboxProcess, client: requests.Session, params: Any, name: str
) -> None:
    envelope = exchange(sealbox, client, request(METHODS[name].name, params))
    assert envelope["error"]["name"] in ("xInvalidParameter", "xInvalidRequest"), envelope


@FUZZ_ENVELOPE
@given(method=st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.just(""),
    st.lists(st.sampled_from([m.name for m in METHODS.values()]), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
))
def test_method_of_wrong_type(
    sealbox: SealboxProcess, client: requests.Session, method: Any
) -> None:
    envelope = exchange(sealbox, client, request(method, {}))
    assert envelope["error"]["name"] == "xInvalidRequest", envelope


@FUZZ_ENVELOPE
@given(name=st.text(min_size=1, max_size=30).filter(lambda n: n.lower() not in METHODS))
def test_unknown_method_names(sealbox: SealboxProcess, client: requests.Session, name: str) -> None:
    envelope = exchange(sealbox, client, request(name, {}))
    assert envelope["error"]["name"] == "xUnknownAPIMethod", envelope


def _not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return True
    return False


@FUZZ_ENVELOPE
@given(body=st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b'{"method": "GetAPI"', b"\xff\xfe{}", b"GetAPI", b"{'a': 1}",
                     b'{"method": "GetAPI", "params": {}}}', b"\x00" * 10]),
).filter(_not_json))
def test_bodies_that_are_not_json(
    sealbox: SealboxProcess, client: requests.Session, body: bytes
) -> None:
    envelope = exchange(sealbox, client, body)
    assert envelope["error"]["name"] == "xInvalidRequest", envelope


@pytest.mark.parametrize("body", [b"null", b"[]", b"1", b'"GetAPI"', b"true",
                                  b'[{"method": "GetAPI", "params": {}}]'])
def test_json_that_is_not_a_request_object(
    sealbox: SealboxProcess, client: requests.Session, body: bytes
) -> None:
    envelope = exchange(sealbox, client, body)
    assert envelope["error"]["name"] == "xInvalidRequest", envelope


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_params_are_a_request_error(
    sealbox: SealboxProcess, client: requests.Session, depth: int
) -> None:
    """Nesting past the JSON parser's recursion limit is bad input, not a crash."""
    body = b'{"method": "GetAPI", "id": 1, "params": {"junk": ' + b"[" * depth + b"]" * depth
    envelope = exchange(sealbox, client, body + b"}}")
    assert envelope["error"]["name"] in ("xInvalidRequest", "xInvalidParameter"), envelope


# --- every method, deterministic ---------------------------------------------------------------
WITH_REQUIRED = [n for n, m in METHODS.items() if any(p.required for p in m.params)]
ID_PARAMS = [(n, p.name) for n, m in METHODS.items() for p in m.params if is_id(p)]


def test_the_registry_is_covered() -> None:
    """The parametrized tests below really see methods with required and ID parameters."""
    assert {"getapi", "getclusterinfo", "listdrives"} <= set(METHODS)
    assert WITH_REQUIRED and ID_PARAMS


@pytest.mark.parametrize("name", WITH_REQUIRED)
def test_missing_required_params_name_the_first(
    sealbox: SealboxProcess, client: requests.Session, name: str
) -> None:
    m = METHODS[name]
    first = next(p.name for p in m.params if p.required)
    for params in ({}, {p.name: None for p in m.params}):
        err = exchange(sealbox, client, request(m.name, params))["error"]
        assert err["name"] == "xMissingParameter", err
        assert first in err["message"], err


@pytest.mark.parametrize(("name", "param"), ID_PARAMS)
@pytest.mark.parametrize("bad", ["abc", ["abc"], "1.5", "0x10", "-1", "0", 2**70])
def test_bad_ids_are_invalid_parameters_naming_the_param(
    sealbox: SealboxProcess, client: requests.Session, name: str, param: str, bad: Any
) -> None:
    m = METHODS[name]
    params = {p.name: plausible(p) for p in m.params}
    params[param] = bad
    err = exchange(sealbox, client, request(m.name, params))["error"]
    assert err["name"] == "xInvalidParameter", err
    assert param in err["message"], err


@pytest.mark.parametrize("text", ["\u0661", "\uff11", "\u00b9", "1\u2007", "\u20071"])
def test_ids_are_ascii_digits(
    sealbox: SealboxProcess, client: requests.Session, text: str
) -> None:
    """Arabic-Indic or fullwidth digits, superscripts and Unicode spaces are not an ID: a
    string that looks like junk must not quietly address object 1."""
    name, param = next((n, p) for n, p in ID_PARAMS if METHODS[n].name == "GetAsyncResult")
    err = exchange(sealbox, client, request(METHODS[name].name, {param: text}))["error"]
    assert err["name"] == "xInvalidParameter", err
    assert param in err["message"], err


ONE_MB_CASES = [(n, p.name) for n, m in METHODS.items() for p in m.params] + [
    (n, "sealboxNoSuchParameter") for n in METHODS
]


@pytest.mark.parametrize(("name", "param"), ONE_MB_CASES)
def test_one_megabyte_strings(
    sealbox: SealboxProcess, client: requests.Session, name: str, param: str
) -> None:
    """Each parameter (and an unknown extra) as a 1 MB string, the others plausible."""
    m = METHODS[name]
    params = {p.name: plausible(p) for p in m.params}
    params[param] = MEGABYTE
    exchange(sealbox, client, request(m.name, params))


def test_body_over_the_size_limit_is_a_json_error(
    sealbox: SealboxProcess, client: requests.Session
) -> None:
    """A body over sealbox's limit still gets an Element error: a non-JSON answer makes the
    SDK raise ``HTTPError("400 JSONDecodeError ...")`` instead of ``ApiServerError``."""
    body = request("GetAPI", {"junk": MEGABYTE * 9})
    before = quiet_snapshot(sealbox)
    envelope = check_answer(post(sealbox, client, body), body)
    assert envelope["error"]["name"] in ("xInvalidRequest", "xInvalidParameter"), envelope
    assert snapshot(sealbox) == before


def test_the_snapshot_sees_a_change(sealbox: SealboxProcess, client: requests.Session) -> None:
    """The configuration guard can fail: a valid change shows in the snapshot."""
    before = quiet_snapshot(sealbox)
    envelope = check_answer(post(sealbox, client, request("AddClusterAdmin", {
        "username": "fuzz-guard-check", "password": "fuzz-guard-password",
        "access": ["read"], "acceptEula": True,
    })), b"AddClusterAdmin")
    assert "result" in envelope, envelope
    assert quiet_snapshot(sealbox) != before
