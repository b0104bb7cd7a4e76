"""ListDrives, AddDrives."""

from __future__ import annotations

from typing import Any

from sealbox.api.params import ID, P, to_int
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.drives import NewDrive
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.topology import drive_info
from sealbox.errors import InvalidParameter

_DRIVE_ID = ID("driveID")


def _new_drive(name: str, raw: Any) -> NewDrive:
    """A ``NewDrive`` object; a bare ID is accepted too (older scripts send plain IDs)."""
    if not isinstance(raw, dict):
        return NewDrive(to_int(_DRIVE_ID, raw, name))
    if raw.get("driveID") is None:
        raise InvalidParameter(f"Invalid parameter '{name}': driveID is missing.")
    kind = raw.get("type")
    if kind is not None and not isinstance(kind, str):
        raise InvalidParameter(f"Invalid parameter '{name}.type': expected a string.")
    return NewDrive(to_int(_DRIVE_ID, raw["driveID"], f"{name}.driveID"), kind)


@method("ListDrives", category="drives", bootstrap=True)
def list_drives(ctx: CallContext, params: Params) -> Result:
    return {"drives": [drive_info(d) for d in ctx.cluster.topology.drives()]}


@method(
    "AddDrives",
    P("drives", "custom", required=True, array=True, convert=_new_drive, max_items=4096),
    category="drives", mutates=True,
)
def add_drives(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        handle = c.drives.claim_for_add(txn, params["drives"])
    c.jobs.launch(handle)
    return {"asyncHandle": handle}
