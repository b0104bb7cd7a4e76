"""CreateVolume, ListVolumes, ListActiveVolumes, ModifyVolume, DeleteVolume,
ListDeletedVolumes, RestoreDeletedVolume, PurgeDeletedVolume."""

from __future__ import annotations

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.accounts import get_account
from sealbox.cluster.volume_access import ACCESS_VALUES
from sealbox.cluster.volumes import FIFO_DEFAULT, get_volume, merge_qos, volume_info
from sealbox.errors import InvalidParameter

_ACCESS = ACCESS_VALUES  # the contract's VolumeAccess enumeration; see volume_access.py
MAX_SNAPSHOTS = 32
_SIZE = P("totalSize", "int", required=True, minimum=1, maximum=2**62)


@method("CreateVolume", P("name", "str", required=True, max_len=64), ID("accountID"), _SIZE,
        P("enable512e", "bool"), P("qos", "object"), P("attributes", "object"),
        P("access", "str", choices=_ACCESS), P("protectionScheme", "str"),
        P("associateWithQoSPolicy", "bool"), ID("qosPolicyID", required=False),
        P("enableSnapMirrorReplication", "bool"),
        # No snapshots in sealbox: the FIFO sizes are recorded and reported, within the 32
        # snapshots an Element volume can hold.
        P("fifoSize", "int", minimum=1, maximum=MAX_SNAPSHOTS),
        P("minFifoSize", "int", minimum=0, maximum=MAX_SNAPSHOTS),
        category="volumes", mutates=True)
def create_volume(ctx: CallContext, params: Params) -> Result:
    scheme = params["protectionScheme"]
    if scheme not in (None, "doubleHelix"):
        raise InvalidParameter(
            "Invalid parameter 'protectionScheme': sealbox keeps two copies (doubleHelix)."
        )
    _refuse_what_sealbox_lacks(params)
    doc = ctx.cluster.volumes.create(params["name"], params["accountID"], params["totalSize"],
                                     params)
    return {"volumeID": doc["volumeID"], "volume": volume_info(doc), "curve": {}}


def _refuse_what_sealbox_lacks(params: Params) -> None:
    """Options naming features sealbox does not have are refused, not silently dropped: a
    script must not believe a volume got a QoS policy or SnapMirror."""
    if params["qosPolicyID"] is not None:
        raise InvalidParameter(
            f"Invalid parameter 'qosPolicyID': QoS policy {params['qosPolicyID']} does not "
            "exist (sealbox has no QoS policies; give the volume's own qos instead).")
    if params["associateWithQoSPolicy"]:
        raise InvalidParameter(
            "Invalid parameter 'associateWithQoSPolicy': sealbox has no QoS policies; give the "
            "volume's own qos instead.")
    if params["enableSnapMirrorReplication"]:
        raise InvalidParameter(
            "Invalid parameter 'enableSnapMirrorReplication': sealbox has no SnapMirror.")
    fifo, min_fifo = params["fifoSize"] or FIFO_DEFAULT, params["minFifoSize"]
    if min_fifo is not None and min_fifo > fifo:
        raise InvalidParameter(
            f"Invalid parameter 'minFifoSize': it must be at most fifoSize ({min_fifo} > "
            f"{fifo}).")


def _listing(ctx: CallContext, statuses: tuple[str, ...], params: Params) -> Result:
    docs = ctx.cluster.volumes.list(statuses)
    start, limit = params.get("startVolumeID") or 0, params.get("limit")
    ids, accounts = params.get("volumeIDs"), params.get("accounts")
    name = params.get("volumeName")
    docs = [d for d in docs if d["volumeID"] >= start
            and (ids is None or d["volumeID"] in ids)
            and (accounts is None or d["accountID"] in accounts)
            and (name is None or d["name"] == name)]
    return {"volumes": [volume_info(d) for d in (docs[:limit] if limit else docs)]}


@method("ListVolumes", ID("startVolumeID", required=False),
        P("limit", "int", minimum=1, maximum=100_000),
        P("volumeStatus", "str", choices=("active", "deleted", "creating", "snapshotting")),
        P("accounts", "int", array=True, minimum=1), P("isPaired", "bool"),
        P("volumeIDs", "int", array=True, minimum=1), P("volumeName", "str", max_len=64),
        P("protectionSchemes", "str", array=True), P("includeVirtualVolumes", "bool"),
        category="volumes")
def list_volumes(ctx: CallContext, params: Params) -> Result:
    status = params["volumeStatus"]
    statuses = ("active", "deleted") if status is None else (
        ("deleted",) if status == "deleted" else ("active",))
    if params["isPaired"]:
        return {"volumes": []}
    return _listing(ctx, statuses, params)


@method("ListActiveVolumes", ID("startVolumeID", required=False),
        P("limit", "int", minimum=1, maximum=100_000), category="volumes")
def list_active_volumes(ctx: CallContext, params: Params) -> Result:
    return _listing(ctx, ("active",), params)


@method("ListVolumesForAccount", ID("accountID"), ID("startVolumeID", required=False),
        P("limit", "int", minimum=1, maximum=100_000), P("includeVirtualVolumes", "bool"),
        category="volumes")
def list_volumes_for_account(ctx: CallContext, params: Params) -> Result:
    """The account's active and deleted (not yet purged) volumes, as Element lists them."""
    with ctx.cluster.store.read() as txn:
        get_account(txn, params["accountID"])  # an unknown account is an error, not []
    return _listing(ctx, ("active", "deleted"), {**params, "accounts": [params["accountID"]]})


@method("ListDeletedVolumes", category="volumes")
def list_deleted_volumes(ctx: CallContext, params: Params) -> Result:
    return _listing(ctx, ("deleted",), params)


@method("ModifyVolume", ID("volumeID"), P("totalSize", "int", minimum=1, maximum=2**62),
        ID("accountID", required=False), P("access", "str", choices=_ACCESS),
        P("qos", "object"), P("attributes", "object"), category="volumes", mutates=True)
def modify_volume(ctx: CallContext, params: Params) -> Result:
    c, vid = ctx.cluster, params["volumeID"]
    changes: dict[str, object] = {}
    with c.store.read() as txn:  # validate everything before anything changes
        current = get_volume(txn, vid)
        if params["accountID"] is not None:
            changes["accountID"] = get_account(txn, params["accountID"])["accountID"]
    if params["access"] is not None:
        changes["access"] = params["access"]
    if params["attributes"] is not None:
        changes["attributes"] = params["attributes"]
    if params["qos"] is not None:
        changes["qos"] = merge_qos(current["qos"], params["qos"], "current")
    if params["totalSize"] is not None:
        c.volumes.grow(vid, params["totalSize"])
    return {"volume": volume_info(c.volumes.update(vid, **changes))}


@method("DeleteVolume", ID("volumeID"), category="volumes", mutates=True)
def delete_volume(ctx: CallContext, params: Params) -> Result:
    return {"volume": volume_info(ctx.cluster.volumes.delete(params["volumeID"]))}


@method("RestoreDeletedVolume", ID("volumeID"), category="volumes", mutates=True)
def restore_deleted_volume(ctx: CallContext, params: Params) -> Result:
    ctx.cluster.volumes.restore(params["volumeID"])
    return {}


@method("PurgeDeletedVolume", ID("volumeID"), category="volumes", mutates=True)
def purge_deleted_volume(ctx: CallContext, params: Params) -> Result:
    ctx.cluster.volumes.purge(params["volumeID"])
    return {}
