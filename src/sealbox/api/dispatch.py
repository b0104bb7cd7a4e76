"""One JSON-RPC request, from body bytes to the response envelope, without HTTP.

Everything a client sends is untrusted: the body may not be JSON, the method may not exist, the
params may have any shape. Every failure becomes an Element error object; an unexpected
exception is logged here with its traceback and the client gets only a generic message.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from sealbox.api.params import validate
from sealbox.api.registry import CallContext, Method, lookup
from sealbox.cluster.admins import Principal
from sealbox.cluster.runtime import Cluster
from sealbox.errors import (
    InternalError,
    InvalidParameter,
    NotPermitted,
    SealboxError,
    UnknownMethod,
)

log = logging.getLogger("sealbox.api")
BOOTSTRAP = Principal("bootstrap", frozenset({"administrator"}))


class RequestError(SealboxError):
    element_name = "xInvalidRequest"


class PermissionDenied(SealboxError):
    element_name = "xPermissionDenied"


def _no_constant(word: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON has not: stored, they would make every
    later listing that shows them unreadable to strict JSON clients."""
    raise ValueError(f"{word} is not a JSON number")


def _finite(text: str) -> float:
    """A number too large for a float (``1e400``) would read as infinity: refused the same."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def parse_request(body: bytes) -> tuple[Any, str, dict[str, Any]]:
    """``(id, method, params)`` of a request body."""
    try:
        req = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("The request body is not valid JSON.") from None
    except RecursionError:
        raise RequestError("The request body is nested too deeply.") from None
    if not isinstance(req, dict):
        raise RequestError("The request must be a JSON object with method and params.")
    name = req.get("method")
    if not isinstance(name, str) or not name:
        raise RequestError("The request has no 'method' string.")
    params = req.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidParameter("Invalid parameter 'params': expected a JSON object.")
    return req.get("id"), name, params


def _authorize(m: Method, principal: Principal | None) -> Principal:
    if principal is None:
        # No admins yet: the cluster is waiting for CreateCluster, as a new Element node is.
        if not m.bootstrap:
            raise NotPermitted(
                f"{m.name} needs a cluster: call CreateCluster first (the cluster has not "
                "been created yet)."
            )
        return BOOTSTRAP
    if not principal.may(m.category, m.mutates):
        raise PermissionDenied(
            f"Cluster admin '{principal.username}' lacks the '{m.category}' access that "
            f"{m.name} needs."
        )
    return principal


def _call(cluster: Cluster, principal: Principal | None, name: str, raw: dict[str, Any]) -> Any:
    m = lookup(name)
    if m is None:
        raise UnknownMethod(name)
    who = _authorize(m, principal)
    try:
        params = validate(m.params, raw)
        result = m.handler(CallContext(cluster, who, m.name), params)
    except SealboxError as e:
        if m.mutates:
            cluster.audit.record(who.username, m.name, raw.keys(), "error", e.element_name)
        raise
    if m.mutates:
        cluster.audit.record(who.username, m.name, raw.keys(), "success")
    return result


def handle(cluster: Cluster, principal: Principal | None, body: bytes) -> dict[str, Any]:
    """The response envelope for one request body."""
    req_id: Any = None
    try:
        req_id, name, params = parse_request(body)
        return {"id": req_id, "result": _call(cluster, principal, name, params)}
    except SealboxError as e:
        return {"id": req_id, "error": e.to_element()}
    except Exception:
        log.exception("unexpected failure handling a request")
        err = InternalError("An unexpected error occurred; the sealbox log has the details.")
        return {"id": req_id, "error": err.to_element()}
