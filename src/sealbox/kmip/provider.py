"""Failover across the key servers of one key provider (:class:`ProviderClient`).

Servers are tried in the configured order. Moving to the next server is always safe when the
request never reached the previous one (:class:`KmipConnectionFailed`); for idempotent
operations it is also done after a lost connection or a garbled answer. A KMIP *answer*
(``KmipOperationFailed``: ITEM_NOT_FOUND, PERMISSION_DENIED…) is final: the servers of a
provider are expected to hold the same objects, and a key that one says is missing must not
be papered over by another. If every server fails, the most telling failure is raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from sealbox.errors import SealboxError
from sealbox.kmip.client import KmipClient, ObjectAttributes, ObjectKind, ServerInfo
from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.errors import (
    KmipConnectionFailed,
    KmipConnectionLost,
    KmipError,
    KmipInvalidConfiguration,
    KmipObjectNotFound,
    KmipProtocolError,
)
from sealbox.secrets import Secret

log = logging.getLogger("sealbox.kmip")
T = TypeVar("T")


class ProviderClient:
    """The key servers of one provider, each with its own long-lived connection."""

    def __init__(self, endpoints: Sequence[KmipEndpoint]) -> None:
        if not endpoints:
            raise KmipInvalidConfiguration("A key provider needs at least one key server.")
        self._clients = [KmipClient(e) for e in endpoints]

    @property
    def clients(self) -> tuple[KmipClient, ...]:
        return tuple(self._clients)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def test_connection(self) -> ServerInfo:
        return self._first(lambda c: c.test_connection(), idempotent=True)

    def create_symmetric_key(self, name: str | None = None) -> str:
        return self._first(lambda c: c.create_symmetric_key(name), idempotent=False)

    def register_secret_data(self, data: Secret, name: str | None = None) -> str:
        return self._first(lambda c: c.register_secret_data(data, name), idempotent=False)

    def get(self, uid: str) -> Secret:
        return self._first(lambda c: c.get(uid), idempotent=True)

    def get_many(self, uids: Sequence[str]) -> list[Secret | KmipError]:
        return self._first(lambda c: c.get_many(uids), idempotent=True)

    def locate(self, name: str | None = None, kind: ObjectKind | None = None) -> list[str]:
        return self._first(lambda c: c.locate(name, kind), idempotent=True)

    def get_attributes(self, uid: str) -> ObjectAttributes:
        return self._first(lambda c: c.get_attributes(uid), idempotent=True)

    def revoke(self, uid: str, compromised: bool = False) -> None:
        self._first(lambda c: c.revoke(uid, compromised), idempotent=False)

    def destroy(self, uid: str) -> None:
        self._first(lambda c: c.destroy(uid), idempotent=False)

    def revoke_and_destroy(self, uid: str) -> bool:
        """Decommission an object: Revoke (cessation of operation), then Destroy. False if it
        was already gone (a repeated decommission after a crash); a Revoke refused for another
        reason does not stop the Destroy."""
        try:
            self.revoke(uid)
        except KmipObjectNotFound:
            return False
        except SealboxError as e:
            log.info("revoke of %s: %s (destroying anyway)", uid, e.message)
        with contextlib.suppress(KmipObjectNotFound):  # gone meanwhile: nothing left to do
            self.destroy(uid)
        return True

    def _first(self, op: Callable[[KmipClient], T], *, idempotent: bool) -> T:
        retryable: tuple[type[KmipError], ...] = (KmipConnectionFailed,)
        if idempotent:
            retryable = (KmipConnectionFailed, KmipConnectionLost, KmipProtocolError)
        errors: list[KmipError] = []
        for client in self._clients:
            try:
                return op(client)
            except retryable as exc:
                log.warning("KMIP: key server %s unusable: %s", client.endpoint.label, exc.message)
                errors.append(exc)
        raise max(errors, key=lambda e: e.rank)
