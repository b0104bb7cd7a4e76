"""Checks a raw result against the wire contract (``tests/contract/element-ekm-api.json``,
taken from the official SDK): every required field present, not null, of the declared type."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

_FILE = Path(__file__).resolve().parents[1] / "contract" / "element-ekm-api.json"
_SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "float": (float, int, str), "boolean": (bool,),
    "object": (dict,),
}


@cache
def contract() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_FILE.read_text())
    return data


def _type_ok(kind: str, value: Any, where: str, problems: list[str]) -> None:
    types = contract()["types"]
    if kind == "uuid-string":
        try:
            uuid.UUID(value)
        except (ValueError, TypeError, AttributeError):
            problems.append(f"{where}: {value!r} is not a UUID string")
    elif kind in _SCALARS:
        if isinstance(value, bool) and kind != "boolean":
            problems.append(f"{where}: boolean where {kind} expected")
        elif not isinstance(value, _SCALARS[kind]):
            problems.append(f"{where}: {type(value).__name__} where {kind} expected")
    elif kind in types and types[kind].get("kind") == "enum":
        if value not in types[kind]["values"]:
            problems.append(f"{where}: {value!r} is not a {kind} value")
    elif kind in types:
        _fields(types[kind].get("fields", []), value, where, problems)
    else:
        problems.append(f"{where}: unknown contract type {kind}")


def _fields(fields: list[dict[str, Any]], obj: Any, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return
    for f in fields:
        name, value = f["name"], obj.get(f["name"])
        path = f"{where}.{name}"
        if value is None:
            if f.get("required"):
                problems.append(f"{path}: required field missing or null")
            continue
        if f.get("array"):
            if not isinstance(value, list):
                problems.append(f"{path}: expected an array")
                continue
            for i, item in enumerate(value):
                _type_ok(f["type"], item, f"{path}[{i}]", problems)
        else:
            _type_ok(f["type"], value, path, problems)


def problems(method: str, result: Any) -> list[str]:
    """What is wrong with ``result`` as the result of ``method`` (empty when complete)."""
    spec = contract()["methods"][method]["result"]
    found: list[str] = []
    if spec is None or spec.get("model") is None:
        if not isinstance(result, dict):
            found.append(f"{method}: result must be a JSON object")
        return found
    _fields(spec.get("fields", []), result, method, found)
    return found


def assert_complete(method: str, result: Any) -> None:
    found = problems(method, result)
    assert not found, "\n".join(found)
