"""AddClusterAdmin, ListClusterAdmins, ModifyClusterAdmin, RemoveClusterAdmin,
GetCurrentClusterAdmin."""

from __future__ import annotations

from sealbox.api.params import P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.admins import COLL
from sealbox.cluster.formation import require_cluster
from sealbox.errors import InvalidParameter, NotPermitted
from sealbox.store.base import Txn


@method(
    "AddClusterAdmin",
    P("username", "str", required=True, max_len=64),
    P("password", "str", required=True, secret=True, max_len=1024),
    P("access", "str", required=True, array=True, max_len=64, max_items=32),
    P("acceptEula", "bool", required=True),
    P("attributes", "object"),
    category="clusterAdmin", mutates=True,
)
def add_cluster_admin(ctx: CallContext, params: Params) -> Result:
    if not params["acceptEula"]:
        raise InvalidParameter("Invalid parameter 'acceptEula': the EULA must be accepted.")
    _check_grant(ctx, params["access"])
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        admin_id = c.admins.add(
            txn, params["username"], params["password"], params["access"], params["attributes"]
        )
    return {"clusterAdminID": admin_id}


@method("ListClusterAdmins", category="clusterAdmin")
def list_cluster_admins(ctx: CallContext, params: Params) -> Result:
    return {"clusterAdmins": ctx.cluster.admins.list()}


@method(
    "ModifyClusterAdmin",
    P("clusterAdminID", "int", required=True, minimum=1),
    P("password", "str", secret=True, max_len=1024),
    P("access", "str", array=True, max_len=64, max_items=32),
    P("attributes", "object"),
    category="clusterAdmin", mutates=True,
)
def modify_cluster_admin(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        _check_target(ctx, txn, params["clusterAdminID"])
        if params["access"] is not None:
            _check_grant(ctx, params["access"])
        c.admins.modify(txn, params["clusterAdminID"], params["password"], params["access"],
                        params["attributes"])
    return {}


@method(
    "RemoveClusterAdmin",
    P("clusterAdminID", "int", required=True, minimum=1),
    category="clusterAdmin", mutates=True,
)
def remove_cluster_admin(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        _check_target(ctx, txn, params["clusterAdminID"])
        c.admins.remove(txn, params["clusterAdminID"])
    return {}


@method("GetCurrentClusterAdmin", category="any")
def get_current_cluster_admin(ctx: CallContext, params: Params) -> Result:
    found = ctx.cluster.admins.find(ctx.principal.username)
    if found is None:  # removed by another admin since this call was authenticated
        raise NotPermitted("The calling cluster admin no longer exists.")
    return {"clusterAdmin": found}


def _check_target(ctx: CallContext, txn: Txn, admin_id: int) -> None:
    """The caller may change the admin ``admin_id`` (an unknown one is the service's error)."""
    target = txn.get(COLL, admin_id)
    if target is not None:
        _check_grant(ctx, target["access"])


def _check_grant(ctx: CallContext, access: list[str]) -> None:
    """Only an ``administrator`` may create, change or remove an ``administrator``: an admin
    with ``clusterAdmin`` access alone could otherwise raise itself to full control."""
    if "administrator" in access and "administrator" not in ctx.principal.access:
        raise NotPermitted(
            "Only a cluster admin with 'administrator' access may grant 'administrator' access "
            "or change an admin who has it.")
