"""Cluster admins: who may call the API, and with which access."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sealbox.cluster.passwords import VerifiedCache, hash_password, verify_password
from sealbox.errors import Exists, InvalidParameter
from sealbox.secrets import Secret
from sealbox.store.base import ConfigStore, Doc, Txn

COLL = "admins"
ACCESS_TYPES = frozenset({
    "accounts", "administrator", "clusterAdmin", "drives", "nodes", "read", "reporting",
    "repositories", "volumes", "write",
})
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    username: str
    access: frozenset[str]

    def may(self, category: str, mutates: bool) -> bool:
        if category == "any" or "administrator" in self.access or category in self.access:
            return True
        return not mutates and bool(self.access & {"read", "reporting"})


def validate_new_admin(username: str, password: Secret, access: Sequence[str]) -> None:
    if not _USERNAME_RE.match(username):
        raise InvalidParameter(
            "Invalid parameter 'username': use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit."
        )
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        raise InvalidParameter(
            f"Invalid parameter 'password': it must be {MIN_PASSWORD} to 1024 characters long."
        )
    unknown = sorted(set(access) - ACCESS_TYPES)
    if unknown or not access:
        raise InvalidParameter(
            f"Invalid parameter 'access': unknown access type(s) {unknown}; use some of "
            f"{', '.join(sorted(ACCESS_TYPES))}." if unknown else
            "Invalid parameter 'access': give at least one access type."
        )


class AdminService:
    def __init__(self, store: ConfigStore) -> None:
        self._store = store
        self._cache = VerifiedCache()

    def add(
        self, txn: Txn, username: str, password: Secret, access: Sequence[str],
        attributes: Doc | None = None,
    ) -> int:
        validate_new_admin(username, password, access)
        if any(d["username"] == username for _, d in txn.list(COLL)):
            raise Exists(f"A cluster admin named '{username}' already exists.")
        admin_id = txn.next_id(COLL)
        txn.put(COLL, admin_id, {
            "clusterAdminID": admin_id, "username": username, "access": sorted(set(access)),
            "authMethod": "Cluster", "attributes": attributes or {},
            "_hash": hash_password(password),
        })
        self._cache.clear()
        return admin_id

    def list(self) -> list[Doc]:
        with self._store.read() as txn:
            return [
                {k: v for k, v in d.items() if not k.startswith("_")} for _, d in txn.list(COLL)
            ]

    def any_exist(self) -> bool:
        with self._store.read() as txn:
            return bool(txn.list(COLL))

    def authenticate(self, username: str, password: Secret) -> Principal | None:
        with self._store.read() as txn:
            found = [d for _, d in txn.list(COLL) if d["username"] == username]
        if not found:
            # Spend the same time as a real check so that names cannot be probed by timing.
            verify_password(password, _dummy_hash())
            return None
        doc = found[0]
        if not self._cache.check(username, password):
            if not verify_password(password, doc["_hash"]):
                return None
            self._cache.remember(username, password)
        return Principal(username, frozenset(doc["access"]))


@functools.cache
def _dummy_hash() -> str:
    return hash_password(Secret(b"sealbox-timing-equaliser"))
