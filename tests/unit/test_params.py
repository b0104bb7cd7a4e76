from __future__ import annotations

import pytest

from sealbox.api.params import ID, P, validate
from sealbox.errors import InvalidParameter, MissingParameter
from sealbox.secrets import Secret

SCHEMA = (
    ID("keyProviderID"),
    P("name", "str", max_len=8),
    P("flag", "bool", default=False),
    P("kind", "str", choices=("Internal", "External")),
    P("ids", "int", array=True, minimum=1, max_items=3),
    P("password", "str", secret=True),
)


def test_ids_accept_numeric_strings() -> None:
    assert validate(SCHEMA, {"keyProviderID": "12"})["keyProviderID"] == 12
    assert validate(SCHEMA, {"keyProviderID": 12, "ids": ["1", 2]})["ids"] == [1, 2]


@pytest.mark.parametrize("bad", ["abc", "1.5", "", True, [], {}, 0, -1, "-3", 2**70, 1.5])
def test_bad_ids_name_the_parameter(bad: object) -> None:
    with pytest.raises(InvalidParameter) as err:
        validate(SCHEMA, {"keyProviderID": bad})
    assert "'keyProviderID'" in err.value.message


def test_missing_and_null_required() -> None:
    for params in ({}, {"keyProviderID": None}):
        with pytest.raises(MissingParameter) as err:
            validate(SCHEMA, params)
        assert err.value.param == "keyProviderID"
        assert err.value.element_name == "xMissingParameter"


def test_defaults_choices_and_limits() -> None:
    v = validate(SCHEMA, {"keyProviderID": 1, "kind": "external", "flag": "true"})
    assert v["kind"] == "External" and v["flag"] is True and v["name"] is None
    with pytest.raises(InvalidParameter, match="'kind'"):
        validate(SCHEMA, {"keyProviderID": 1, "kind": "cloud"})
    with pytest.raises(InvalidParameter, match=r"'name'.*longer"):
        validate(SCHEMA, {"keyProviderID": 1, "name": "x" * 9})
    with pytest.raises(InvalidParameter, match=r"'ids'.*more than 3"):
        validate(SCHEMA, {"keyProviderID": 1, "ids": [1, 2, 3, 4]})
    with pytest.raises(InvalidParameter, match=r"'ids\[1\]'"):
        validate(SCHEMA, {"keyProviderID": 1, "ids": [1, "x"]})


def test_secret_params_become_secrets() -> None:
    v = validate(SCHEMA, {"keyProviderID": 1, "password": "hunter22"})
    assert isinstance(v["password"], Secret)
    assert "hunter22" not in repr(v)


def test_error_messages_do_not_echo_huge_values() -> None:
    with pytest.raises(InvalidParameter) as err:
        validate(SCHEMA, {"keyProviderID": "9" * 5000})
    assert len(err.value.message) < 200
