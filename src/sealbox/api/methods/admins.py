"""AddClusterAdmin, ListClusterAdmins."""

from __future__ import annotations

from sealbox.api.params import P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.formation import require_cluster
from sealbox.errors import InvalidParameter


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
