"""Cluster admins: who may call the API, and with which access."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sealbox.cluster.passwords import VerifiedCache, hash_password, verify_password
from sealbox.errors import AdminNotFound, Exists, InvalidParameter, NotPermitted
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
    validate_password(password)
    validate_access(access)


def validate_password(password: Secret) -> None:
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        raise InvalidParameter(
            f"Invalid parameter 'password': it must be {MIN_PASSWORD} to 1024 characters long."
        )


def validate_access(access: Sequence[str]) -> None:
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

    def modify(
        self, txn: Txn, admin_id: int, password: Secret | None = None,
        access: Sequence[str] | None = None, attributes: Doc | None = None,
    ) -> None:
        """Change an admin's password, access or attributes (each only if given). The primary
        admin (the one the cluster was created with) keeps ``administrator``: without it, no
        admin might be left able to add admins or undo the change."""
        doc = self._get(txn, admin_id)
        if password is not None:
            validate_password(password)
        if access is not None:
            validate_access(access)
            if admin_id == self._primary_id(txn) and "administrator" not in access:
                raise NotPermitted(
                    f"Cluster admin {admin_id} ('{doc['username']}') is the primary cluster "
                    "admin: its 'administrator' access cannot be taken away.")
        changed = dict(doc)
        if password is not None:
            changed["_hash"] = hash_password(password)
        if access is not None:
            changed["access"] = sorted(set(access))
        if attributes is not None:
            changed["attributes"] = attributes
        txn.put(COLL, admin_id, changed)
        # The old password must stop working now, not at the next start.
        self._cache.clear()

    def remove(self, txn: Txn, admin_id: int) -> None:
        """Remove an admin; never the primary one (see :meth:`modify`)."""
        doc = self._get(txn, admin_id)
        if admin_id == self._primary_id(txn):
            raise NotPermitted(
                f"Cluster admin {admin_id} ('{doc['username']}') is the primary cluster admin "
                "and cannot be removed.")
        txn.delete(COLL, admin_id)
        self._cache.clear()

    def find(self, username: str) -> Doc | None:
        """The public fields of the admin named ``username``, if any."""
        with self._store.read() as txn:
            for _, d in txn.list(COLL):
                if d["username"] == username:
                    return _public(d)
        return None

    def reset_password(self, txn: Txn, username: str | None, password: Secret) -> Doc:
        """Give an admin (the primary one if ``username`` is None) a new password: the
        recovery path of ``sealbox admin reset-password``, for someone holding the data dir."""
        if username is None:
            admin_id = self._primary_id(txn)
        else:
            found = [i for i, d in txn.list(COLL) if d["username"] == username]
            if not found:
                raise AdminNotFound(f"No cluster admin is named '{username}'.")
            admin_id = int(found[0])
        self.modify(txn, admin_id, password=password)
        return _public(self._get(txn, admin_id))

    @staticmethod
    def _get(txn: Txn, admin_id: int) -> Doc:
        doc = txn.get(COLL, admin_id)
        if doc is None:
            raise AdminNotFound(f"Cluster admin {admin_id} does not exist.")
        return doc

    @staticmethod
    def _primary_id(txn: Txn) -> int:
        """The admin CreateCluster made: the first one, since admins are only added after it
        and the primary one cannot be removed."""
        ids = [int(i) for i, _ in txn.list(COLL)]
        if not ids:
            raise NotPermitted("The cluster has no admins yet: create the cluster first.")
        return min(ids)

    def list(self) -> list[Doc]:
        with self._store.read() as txn:
            return [_public(d) for _, d in txn.list(COLL)]

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
        if not self._cache.check(username, doc["_hash"], password):
            if not verify_password(password, doc["_hash"]):
                return None
            self._cache.remember(username, doc["_hash"], password)
        return Principal(username, frozenset(doc["access"]))


def _public(doc: Doc) -> Doc:
    """An admin record without its private fields (the password hash)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


@functools.cache
def _dummy_hash() -> str:
    return hash_password(Secret(b"sealbox-timing-equaliser"))
