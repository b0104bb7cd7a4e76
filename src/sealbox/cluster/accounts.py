"""Tenant accounts: in Element every volume belongs to one.

sealbox serves volumes over NBD, not iSCSI, so accounts carry no CHAP secrets.
"""

from __future__ import annotations

import re

from sealbox.cluster.clock import now_iso
from sealbox.errors import AccountNotFound, Exists, InvalidParameter, NotPermitted
from sealbox.store.base import Doc, Txn

COLL = "accounts"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def get_account(txn: Txn, account_id: int) -> Doc:
    doc = txn.get(COLL, account_id)
    if doc is None:
        raise AccountNotFound(f"Illegal AccountID {account_id}: the account does not exist.")
    return doc


def add_account(txn: Txn, username: str, attributes: Doc | None) -> Doc:
    if not _USERNAME.match(username):
        raise InvalidParameter(
            "Invalid parameter 'username': use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit."
        )
    if any(d["username"] == username for _, d in txn.list(COLL)):
        raise Exists(f"An account named '{username}' already exists.")
    account_id = txn.next_id(COLL)
    doc: Doc = {"accountID": account_id, "username": username, "status": "active",
                "attributes": attributes or {}, "createTime": now_iso()}
    txn.put(COLL, account_id, doc)
    return doc


def remove_account(txn: Txn, account_id: int, volume_ids: list[int]) -> None:
    get_account(txn, account_id)
    if volume_ids:
        raise NotPermitted(
            f"Account {account_id} still owns volumes {volume_ids}; delete and purge them first."
        )
    txn.delete(COLL, account_id)


def account_info(doc: Doc, volume_ids: list[int]) -> Doc:
    """The Element ``Account`` object."""
    return {
        "accountID": doc["accountID"], "username": doc["username"], "status": doc["status"],
        "volumes": volume_ids, "attributes": doc["attributes"], "enableChap": False,
        "storageContainerID": "00000000-0000-0000-0000-000000000000",
        # The SDK's Account model reads these keys unconditionally; no CHAP here (NBD).
        "initiatorSecret": None, "targetSecret": None,
    }
