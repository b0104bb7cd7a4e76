"""AddAccount, ListAccounts, GetAccountByID, RemoveAccount."""

from __future__ import annotations

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.accounts import (
    COLL,
    account_info,
    add_account,
    get_account,
    remove_account,
)
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.volumes import COLL as VOLUMES
from sealbox.store.base import Txn


def _volumes_of(txn: Txn, account_id: int) -> list[int]:
    return [i for i, d in txn.list(VOLUMES)
            if d["accountID"] == account_id and d["status"] != "purging"]


@method("AddAccount", P("username", "str", required=True, max_len=64),
        P("initiatorSecret", "str", secret=True), P("targetSecret", "str", secret=True),
        P("enableChap", "bool"), P("attributes", "object"),
        category="accounts", mutates=True)
def add(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.write() as txn:
        require_cluster(txn)
        doc = add_account(txn, params["username"], params["attributes"])
        return {"accountID": doc["accountID"], "account": account_info(doc, [])}


@method("ListAccounts", ID("startAccountID", required=False),
        P("limit", "int", minimum=1, maximum=100_000), P("includeStorageContainers", "bool"),
        category="accounts")
def list_accounts(ctx: CallContext, params: Params) -> Result:
    start, limit = params["startAccountID"] or 0, params["limit"]
    with ctx.cluster.store.read() as txn:
        docs = [d for i, d in txn.list(COLL) if i >= start]
        out = [account_info(d, _volumes_of(txn, d["accountID"])) for d in docs]
    return {"accounts": out[:limit] if limit else out}


@method("GetAccountByID", ID("accountID"), category="accounts")
def get_by_id(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        doc = get_account(txn, params["accountID"])
        return {"account": account_info(doc, _volumes_of(txn, doc["accountID"]))}


@method("RemoveAccount", ID("accountID"), category="accounts", mutates=True)
def remove(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.write() as txn:
        remove_account(txn, params["accountID"], _volumes_of(txn, params["accountID"]))
    return {}
