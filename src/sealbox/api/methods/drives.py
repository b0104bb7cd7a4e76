"""ListDrives, GetDriveConfig, AddDrives, RemoveDrives, SecureEraseDrives.

The three changing methods return an async handle at once (poll with GetAsyncResult); drive IDs
may arrive as numeric strings (sfcli sends ``["1","2"]``). AddDrives takes ``NewDrive`` objects
(``{"driveID": 13, "type": "block"}``), as the Element API and SDK send them; RemoveDrives and
SecureEraseDrives take plain IDs. ListDrives lists the drives of cluster members only: in
Element a pending node's drives are not the cluster's until the node is added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sealbox.api.params import ID, INT_MAX, P, to_int
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.drive_config import drive_config
from sealbox.cluster.drives import NewDrive, shown_status
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.topology import NodeState, drive_info
from sealbox.errors import InvalidParameter, NodeNotFound
from sealbox.store.base import Txn

_DRIVE_ID = ID("driveID")


def _new_drive(name: str, raw: Any) -> NewDrive:
    """A ``NewDrive`` object. A bare ID is refused: Element takes only objects, and a script
    that sends IDs would otherwise work here and fail on a real cluster."""
    if not isinstance(raw, dict):
        shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
        raise InvalidParameter(
            f"Invalid parameter '{name}': expected an object with driveID (a NewDrive, e.g. "
            f'{{"driveID": 13, "type": "block"}}), got {shown}.')
    if raw.get("driveID") is None:
        raise InvalidParameter(f"Invalid parameter '{name}': driveID is missing.")
    kind = raw.get("type")
    if kind is not None and not isinstance(kind, str):
        raise InvalidParameter(f"Invalid parameter '{name}.type': expected a string.")
    return NewDrive(to_int(_DRIVE_ID, raw["driveID"], f"{name}.driveID"), kind)


def _start(ctx: CallContext, claim: Callable[[Txn, Any], int], drives: Any) -> Result:
    """Claim the drives and record the job in one transaction, then run the job."""
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        handle = claim(txn, drives)
    c.jobs.launch(handle)
    return {"asyncHandle": handle}


@method("ListDrives", category="drives", bootstrap=True)
def list_drives(ctx: CallContext, params: Params) -> Result:
    topology = ctx.cluster.topology
    members = {n["nodeID"] for n in topology.nodes(NodeState.ACTIVE)}
    drives = []
    for doc in (d for d in topology.drives() if d["nodeID"] in members):
        info = drive_info(doc)
        info["status"] = shown_status(doc)
        drives.append(info)
    return {"drives": drives}


@method("GetDriveConfig", ID("nodeID", required=False), category="drives", bootstrap=True)
def get_drive_config(ctx: CallContext, params: Params) -> Result:
    """The drives as they report themselves; every node's, or ``nodeID``'s (an addition:
    Element asks each node on its own endpoint, sealbox has one for all)."""
    topology = ctx.cluster.topology
    node_id = params["nodeID"]
    if node_id is not None and all(n["nodeID"] != node_id for n in topology.nodes()):
        raise NodeNotFound(f"Node {node_id} does not exist.")
    drives = [d for d in topology.drives() if node_id is None or d["nodeID"] == node_id]
    return {"driveConfig": drive_config(drives, ctx.cluster.storage.powered_sed)}


@method(
    "AddDrives",
    P("drives", "custom", required=True, array=True, convert=_new_drive, max_items=4096),
    category="drives", mutates=True,
)
def add_drives(ctx: CallContext, params: Params) -> Result:
    return _start(ctx, ctx.cluster.drives.claim_for_add, params["drives"])


_DRIVE_IDS = P("drives", "int", required=True, array=True, minimum=1, maximum=INT_MAX,
               max_items=4096)


@method("RemoveDrives", _DRIVE_IDS, category="drives", mutates=True)
def remove_drives(ctx: CallContext, params: Params) -> Result:
    return _start(ctx, ctx.cluster.drives.claim_for_remove, params["drives"])


@method("SecureEraseDrives", _DRIVE_IDS, category="drives", mutates=True)
def secure_erase_drives(ctx: CallContext, params: Params) -> Result:
    return _start(ctx, ctx.cluster.drives.claim_for_erase, params["drives"])
