"""Declared parameter schemas, and the validation that turns raw JSON into typed values.

Element clients are loose about types: sfcli sends IDs as strings (``["1","2"]``), the seed
sends ``"keyProviderID": "<ID number>"``, and the SDK sends ``null`` for required arguments the
caller left as ``None``. So integers are also accepted as numeric strings, ``null`` counts as
missing, and every other mismatch is an ``xInvalidParameter`` that names the parameter and says
what was wrong, before the method runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sealbox.errors import InvalidParameter, MissingParameter
from sealbox.secrets import Secret

_INT_TEXT = re.compile(r"^ *-?[0-9]{1,19} *$", re.ASCII)
INT_MAX = 2**63 - 1
Convert = Callable[[str, Any], Any]


@dataclass(frozen=True)
class P:
    """One parameter: JSON name, kind and constraints."""

    name: str
    kind: str  # "int" | "str" | "bool" | "object" | "float" | "custom"
    required: bool = False
    array: bool = False
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    max_len: int = 4096
    max_items: int = 10_000
    secret: bool = False
    choices: tuple[str, ...] | None = None
    convert: Convert | None = None  # for kind "custom": (name, raw) -> value


def _bad(name: str, what: str, raw: Any) -> InvalidParameter:
    shown = repr(raw)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidParameter(f"Invalid parameter '{name}': expected {what}, got {shown}.")


def _integral(raw: Any) -> bool:
    if isinstance(raw, str):
        return _INT_TEXT.match(raw) is not None
    return isinstance(raw, float) and raw.is_integer()


def to_int(p: P, raw: Any, name: str) -> int:
    if isinstance(raw, bool):
        raise _bad(name, "an integer", raw)
    if isinstance(raw, int):
        value = raw
    elif _integral(raw):
        value = int(raw)
    else:
        raise _bad(name, "an integer", raw)
    low = p.minimum if p.minimum is not None else -INT_MAX - 1
    high = p.maximum if p.maximum is not None else INT_MAX
    if not low <= value <= high:
        raise InvalidParameter(
            f"Invalid parameter '{name}': {value} is out of range ({low} to {high})."
        )
    return value


def _to_str(p: P, raw: Any, name: str) -> str | Secret:
    if not isinstance(raw, str):
        raise InvalidParameter(f"Invalid parameter '{name}': expected a string.")
    if len(raw) > p.max_len:
        raise InvalidParameter(
            f"Invalid parameter '{name}': longer than {p.max_len} characters."
        )
    if "\x00" in raw:
        raise InvalidParameter(f"Invalid parameter '{name}': contains a NUL character.")
    _check_text(raw, name)
    if p.choices is not None:
        for choice in p.choices:
            if raw.lower() == choice.lower():
                return choice
        raise _bad(name, "one of " + ", ".join(p.choices), raw)
    return Secret.from_text(raw) if p.secret else raw


def _to_bool(raw: Any, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise _bad(name, "true or false", raw)


def _to_float(raw: Any, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _bad(name, "a number", raw)
    return float(raw)


def _check_text(text: str, name: str) -> None:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which are not Unicode text: they
    cannot be encoded as UTF-8, so a password, a certificate field or a stored name holding
    one would fail later, somewhere else, as an unexpected error."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameter(
            f"Invalid parameter '{name}': contains a lone surrogate (\\ud800-\\udfff), "
            "which is not Unicode text."
        ) from None


# A free-form object (``attributes``) is stored and listed as given: bounded, so that one
# call cannot make every later listing huge. Element allows 1000 bytes of attributes per object;
# this is looser, for the scripts that keep more there.
MAX_OBJECT_BYTES = 64 * 1024


def _to_object(raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad(name, "a JSON object", raw)
    _check_tree(raw, name)
    if len(json.dumps(raw)) > MAX_OBJECT_BYTES:
        raise InvalidParameter(
            f"Invalid parameter '{name}': larger than {MAX_OBJECT_BYTES} bytes as JSON."
        )
    return raw


def _check_tree(value: Any, name: str) -> None:
    """Every key and string in a JSON value is Unicode text (:func:`_check_text`)."""
    if isinstance(value, str):
        _check_text(value, name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, name)
            _check_tree(item, name)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, name)


def _one(p: P, raw: Any, name: str) -> Any:
    match p.kind:
        case "int":
            return to_int(p, raw, name)
        case "str":
            return _to_str(p, raw, name)
        case "bool":
            return _to_bool(raw, name)
        case "float":
            return _to_float(raw, name)
        case "object":
            return _to_object(raw, name)
        case "custom" if p.convert is not None:
            return p.convert(name, raw)
    raise AssertionError(f"unknown parameter kind {p.kind}")


def _value(p: P, raw: Any) -> Any:
    if not p.array:
        return _one(p, raw, p.name)
    if not isinstance(raw, list):
        raise InvalidParameter(f"Invalid parameter '{p.name}': expected an array.")
    if len(raw) > p.max_items:
        raise InvalidParameter(
            f"Invalid parameter '{p.name}': more than {p.max_items} entries."
        )
    return [_one(p, item, f"{p.name}[{i}]") for i, item in enumerate(raw)]


def validate(schema: tuple[P, ...], params: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for every declared parameter (defaults filled in); unknown keys ignored,
    as Element ignores them."""
    out: dict[str, Any] = {}
    for p in schema:
        raw = params.get(p.name)
        if raw is None:
            if p.required:
                raise MissingParameter(p.name)
            out[p.name] = p.default
            continue
        out[p.name] = _value(p, raw)
    return out


def ID(name: str, required: bool = True) -> P:
    """An object ID: a positive integer, also accepted as a numeric string."""
    return P(name, "int", required=required, minimum=1, maximum=INT_MAX)
