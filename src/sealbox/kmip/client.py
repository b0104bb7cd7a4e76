"""KMIP operations on one key server (:class:`KmipClient`).

Key bytes leave this module only inside :class:`~sealbox.secrets.Secret`. PyKMIP's managed
objects print their key bytes in ``__str__``, so none is ever formatted, logged or kept beyond
the call that needs it. All methods block (network I/O); see ``connection.py``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sealbox.kmip import _pykmip
from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.connection import KmipConnection, raise_for_result
from sealbox.kmip.errors import (
    KmipConnectionFailed,
    KmipConnectionLost,
    KmipError,
    KmipOperationFailed,
    KmipProtocolError,
    operation_failed,
)
from sealbox.secrets import Secret

log = logging.getLogger("sealbox.kmip")
_enums = _pykmip.enums


class KeyState(enum.Enum):
    """KMIP object states (KMIP 1.x names)."""

    PRE_ACTIVE = "PreActive"
    ACTIVE = "Active"
    DEACTIVATED = "Deactivated"
    COMPROMISED = "Compromised"
    DESTROYED = "Destroyed"
    DESTROYED_COMPROMISED = "DestroyedCompromised"


class ObjectKind(enum.Enum):
    SYMMETRIC_KEY = "SymmetricKey"
    SECRET_DATA = "SecretData"  # noqa: S105 - an object type name, not a password
    OTHER = "Other"


@dataclass(frozen=True)
class ObjectAttributes:
    uid: str
    state: KeyState
    kind: ObjectKind
    name: str | None


@dataclass(frozen=True)
class ServerInfo:
    """What the connection test learnt: the versions and operations the server offers."""

    host: str
    port: int
    protocol_versions: tuple[str, ...]
    operations: tuple[str, ...]
    vendor: str | None


_KIND_TO_KMIP = {
    ObjectKind.SYMMETRIC_KEY: _enums.ObjectType.SYMMETRIC_KEY,
    ObjectKind.SECRET_DATA: _enums.ObjectType.SECRET_DATA,
}
_KEY_MASKS = [
    _enums.CryptographicUsageMask.ENCRYPT,
    _enums.CryptographicUsageMask.DECRYPT,
    _enums.CryptographicUsageMask.WRAP_KEY,
    _enums.CryptographicUsageMask.UNWRAP_KEY,
]
_SECRET_MASKS = [_enums.CryptographicUsageMask.DERIVE_KEY]


class KmipClient:
    """The KMIP operations sealbox needs, on one key server (all its hostnames)."""

    def __init__(self, endpoint: KmipEndpoint) -> None:
        self._conn = KmipConnection(endpoint)
        self._attributes = _pykmip.attribute_factory()

    @property
    def endpoint(self) -> KmipEndpoint:
        return self._conn.endpoint

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> KmipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def test_connection(self) -> ServerInfo:
        """Connect (TLS, both certificates checked) and exchange DiscoverVersions and Query."""
        versions = self._conn.call("DiscoverVersions", _discover_versions, idempotent=True)
        operations, vendor = self._conn.call("Query", _query, idempotent=True)
        host = self._conn.connected_host or self.endpoint.hostnames[0]
        return ServerInfo(host, self.endpoint.port, versions, operations, vendor)

    def create_symmetric_key(self, name: str | None = None) -> str:
        """Create an AES-256 key and activate it; returns its unique identifier.

        Create is never retried (a retry after a lost answer could make a second key). If
        Activate fails, the new key is destroyed (best effort) before the error is raised.
        """
        uid: str = self._conn.call(
            "Create",
            lambda c: c.create(
                _enums.CryptographicAlgorithm.AES,
                256,
                name=name,
                cryptographic_usage_mask=_KEY_MASKS,
            ),
            idempotent=False,
        )
        self._activate_or_discard(uid)
        return uid

    def register_secret_data(self, data: Secret, name: str | None = None) -> str:
        """Register opaque secret bytes (a drive authentication key) and activate them."""

        def register(c: Any) -> str:
            obj = _pykmip.objects.SecretData(
                data.reveal(),
                _enums.SecretDataType.PASSWORD,
                masks=_SECRET_MASKS,
                name=name or "sealbox secret",
            )
            uid: str = c.register(obj)
            return uid

        uid = self._conn.call("Register", register, idempotent=False)
        self._activate_or_discard(uid)
        return uid

    def get(self, uid: str) -> Secret:
        """The bytes of a symmetric key or secret data object."""

        def get(c: Any) -> Secret:
            obj = c.get(uid)
            value = getattr(obj, "value", None)
            if not isinstance(value, bytes | bytearray):
                raise KmipProtocolError(
                    f"Object {uid} on key server {self.endpoint.label} holds no key bytes.",
                    self._conn.connected_host or "",
                    self.endpoint.port,
                )
            return Secret(bytes(value))

        result: Secret = self._conn.call("Get", get, idempotent=True)
        return result

    def get_many(self, uids: Sequence[str]) -> list[Secret | KmipError]:
        """The bytes of several objects, in order, fetched in one KMIP message: a key
        server's cost is mostly per message, so a batch of Gets costs little more than one
        (``bench/boot.py``). An object the server refuses gets its own
        :class:`KmipOperationFailed` in the list; an item the server did not answer (it stops
        at the first error, or does not batch) is fetched alone. Connection failures raise."""
        if not uids:
            return []
        host, port = self._conn.connected_host or "", self.endpoint.port
        answers = self._conn.call(
            "Get", lambda c: _pykmip.batch_get(c, list(uids)), idempotent=True)
        out: list[Secret | KmipError] = []
        for index, uid in enumerate(uids):
            if index not in answers:  # not answered in the batch: fetched alone
                try:
                    out.append(self.get(uid))
                except KmipOperationFailed as exc:
                    out.append(exc)
                continue
            status, reason, message, value = answers[index]
            if status == _enums.ResultStatus.SUCCESS and value is not None:
                out.append(Secret(value))
            elif status == _enums.ResultStatus.SUCCESS:
                out.append(KmipProtocolError(
                    f"Object {uid} on key server {self.endpoint.label} holds no key bytes.",
                    host, port))
            else:
                out.append(operation_failed(self._conn.connected_host or host, port, "Get",
                                            getattr(status, "name", str(status)), reason,
                                            message))
        return out

    def locate(self, name: str | None = None, kind: ObjectKind | None = None) -> list[str]:
        """Unique identifiers of the objects (visible to us) with this name and/or kind."""
        attrs = []
        if name is not None:
            attrs.append(self._attributes.create_attribute(_enums.AttributeType.NAME, name))
        if kind is not None and kind in _KIND_TO_KMIP:
            attrs.append(
                self._attributes.create_attribute(
                    _enums.AttributeType.OBJECT_TYPE, _KIND_TO_KMIP[kind]
                )
            )
        uids = self._conn.call(
            "Locate", lambda c: c.locate(attributes=attrs or None), idempotent=True
        )
        return [str(u) for u in uids]

    def get_attributes(self, uid: str) -> ObjectAttributes:
        """State, kind and name of an object."""
        names = ["State", "Object Type", "Name"]
        _, attrs = self._conn.call(
            "GetAttributes", lambda c: c.get_attributes(uid, names), idempotent=True
        )
        return _parse_attributes(uid, attrs)

    def get_state(self, uid: str) -> KeyState:
        return self.get_attributes(uid).state

    def activate(self, uid: str) -> None:
        self._conn.call("Activate", lambda c: c.activate(uid), idempotent=False)

    def revoke(self, uid: str, compromised: bool = False) -> None:
        """Revoke (deactivate) an object: cessation of operation, or key compromise."""
        codes = _enums.RevocationReasonCode
        code = codes.KEY_COMPROMISE if compromised else codes.CESSATION_OF_OPERATION
        self._conn.call("Revoke", lambda c: c.revoke(code, uid), idempotent=False)

    def destroy(self, uid: str) -> None:
        self._conn.call("Destroy", lambda c: c.destroy(uid), idempotent=False)

    def _activate_or_discard(self, uid: str) -> None:
        try:
            self.activate(uid)
        except KmipError as exc:
            try:
                self.destroy(uid)
            except KmipError:
                log.warning("KMIP: could not destroy object %s after a failed Activate", uid)
            if isinstance(exc, KmipConnectionFailed):
                # The object exists; a provider must not move on and create a second one.
                raise KmipConnectionLost(
                    f"Object {uid} was created on key server {self.endpoint.label} but could "
                    f"not be activated: {exc.message}",
                    exc.host,
                    exc.port,
                ) from exc
            raise


def _discover_versions(c: Any) -> tuple[str, ...]:
    result = c.proxy.discover_versions()
    raise_for_result(result)
    return tuple(f"{v.major}.{v.minor}" for v in (result.protocol_versions or []))


def _query(c: Any) -> tuple[tuple[str, ...], str | None]:
    q = _enums.QueryFunction
    result = c.proxy.query(
        query_functions=[q.QUERY_OPERATIONS, q.QUERY_OBJECTS, q.QUERY_SERVER_INFORMATION]
    )
    raise_for_result(result)
    operations = tuple(_enum_name(op) for op in (result.operations or []))
    vendor = result.vendor_identification
    vendor_text = getattr(vendor, "value", vendor)
    return operations, vendor_text if isinstance(vendor_text, str) else None


def _enum_name(value: Any) -> str:
    # PyKMIP returns bare enums here, wrapped primitives elsewhere.
    inner = value if isinstance(value, enum.Enum) else getattr(value, "value", value)
    return inner.name if isinstance(inner, enum.Enum) else str(inner)


def _parse_attributes(uid: str, attrs: Any) -> ObjectAttributes:
    values: dict[str, Any] = {}
    for attr in attrs:
        values[attr.attribute_name.value] = attr.attribute_value
    state = values.get("State")
    state_name = getattr(getattr(state, "value", None), "name", None)
    if state_name is None:
        raise KmipProtocolError(f"The key server did not report the state of object {uid}.")
    kind_value = getattr(values.get("Object Type"), "value", None)
    kind = {v: k for k, v in _KIND_TO_KMIP.items()}.get(kind_value, ObjectKind.OTHER)
    name_attr = values.get("Name")
    name = getattr(getattr(name_attr, "name_value", None), "value", None)
    return ObjectAttributes(
        uid=uid,
        state=KeyState[state_name],
        kind=kind,
        name=name if isinstance(name, str) else None,
    )
