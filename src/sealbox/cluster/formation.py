"""Forming the cluster (``CreateCluster``) and what Element reports about it."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sealbox.cluster import topology
from sealbox.cluster.admins import AdminService
from sealbox.cluster.clock import now_iso
from sealbox.cluster.topology import DRIVES, NODES, DriveStatus, NodeState
from sealbox.errors import InvalidParameter, NotPermitted
from sealbox.secrets import Secret
from sealbox.store.base import Doc, Txn

COLL = "cluster"
PROTECTION = "doubleHelix"


@dataclass(frozen=True)
class ClusterSpec:
    mvip: str
    svip: str
    username: str
    password: Secret
    nodes: Sequence[str]
    software_encryption: bool = True
    name: str = "sealbox"
    attributes: Doc | None = None


def get_cluster(txn: Txn) -> Doc | None:
    return txn.get(COLL, 0)


def require_cluster(txn: Txn) -> Doc:
    doc = txn.get(COLL, 0)
    if doc is None:
        raise NotPermitted(
            "The cluster has not been created yet: call CreateCluster first "
            "(or start sealbox without --no-create)."
        )
    return doc


def _check_address(param: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidParameter(
            f"Invalid parameter '{param}': {value!r} is not an IP address."
        ) from None


def _pick_nodes(txn: Txn, wanted: Sequence[str]) -> list[Doc]:
    if not wanted:
        raise InvalidParameter("Invalid parameter 'nodes': list at least one node.")
    nodes = [d for _, d in txn.list(NODES)]
    chosen: list[Doc] = []
    for name in wanted:
        match = [n for n in nodes if name in (n["address"], n["name"])]
        if not match:
            known = ", ".join(n["address"] for n in nodes)
            raise InvalidParameter(
                f"Invalid parameter 'nodes': no pending node has address or name {name!r} "
                f"(pending nodes: {known})."
            )
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def create_cluster(txn: Txn, admins: AdminService, spec: ClusterSpec) -> Doc:
    if get_cluster(txn) is not None:
        raise NotPermitted("The cluster already exists; CreateCluster can run only once.")
    _check_address("mvip", spec.mvip)
    _check_address("svip", spec.svip)
    chosen = _pick_nodes(txn, spec.nodes)
    admins.add(txn, spec.username, spec.password, ["administrator"])
    for node in chosen:
        node["state"] = str(NodeState.ACTIVE)
        txn.put(NODES, node["nodeID"], node)
    doc: Doc = {
        "name": spec.name, "uuid": str(uuid.uuid4()), "uniqueID": uuid.uuid4().hex[:4],
        "mvip": spec.mvip, "svip": spec.svip, "mvipNodeID": chosen[0]["nodeID"],
        "svipNodeID": chosen[0]["nodeID"], "createTime": now_iso(),
        "softwareEncryptionAtRestState": "enabled" if spec.software_encryption else "disabled",
        "encryptionAtRestState": "disabled", "attributes": spec.attributes or {},
    }
    txn.put(COLL, 0, doc)
    return doc


def cluster_info(txn: Txn) -> Doc:
    doc = require_cluster(txn)
    active = [d for _, d in txn.list(NODES) if d["state"] == NodeState.ACTIVE]
    return {
        "name": doc["name"], "uuid": doc["uuid"], "uniqueID": doc["uniqueID"],
        "mvip": doc["mvip"], "svip": doc["svip"], "mvipNodeID": doc["mvipNodeID"],
        "svipNodeID": doc["svipNodeID"], "mvipInterface": "lo", "mvipVlanTag": "0",
        "svipInterface": "lo", "svipVlanTag": "0", "repCount": 2,
        "ensemble": [n["address"] for n in active[:5]],
        "encryptionAtRestState": doc["encryptionAtRestState"],
        "softwareEncryptionAtRestState": doc["softwareEncryptionAtRestState"],
        "supportedProtectionSchemes": [PROTECTION], "enabledProtectionSchemes": [PROTECTION],
        "defaultProtectionScheme": PROTECTION, "attributes": doc["attributes"],
    }


def cluster_state(txn: Txn, force: bool) -> Doc:
    doc = get_cluster(txn)
    name = "" if doc is None else doc["name"]
    state = "Available" if doc is None else "Active"
    out: Doc = {"cluster": name, "state": state}
    if force:
        out["nodes"] = [
            {"nodeID": n["nodeID"], "result": {
                "cluster": name if n["state"] == NodeState.ACTIVE else "",
                "state": "Active" if n["state"] == NodeState.ACTIVE else "Available",
            }}
            for _, n in txn.list(NODES)
        ]
    return out


def capacity(txn: Txn, used_space: int = 0, provisioned: int = 0) -> Doc:
    drives = [d for _, d in txn.list(DRIVES) if d["status"] == DriveStatus.ACTIVE]
    block = sum(d["capacity"] for d in drives if d["role"] == topology.DriveRole.BLOCK)
    meta = sum(d["capacity"] for d in drives if d["role"] == topology.DriveRole.SLICE)
    zero = dict.fromkeys((
        "activeSessions", "averageIOPS", "clusterRecentIOSize", "currentIOPS", "maxIOPS",
        "peakActiveSessions", "peakIOPS", "snapshotNonZeroBlocks", "totalOps",
        "usedMetadataSpaceInSnapshots",
    ), 0)
    blocks_used = used_space // 4096
    return zero | {
        "activeBlockSpace": used_space, "maxUsedSpace": block,
        "maxProvisionedSpace": block // 2, "maxOverProvisionableSpace": block // 2 * 5,
        "maxUsedMetadataSpace": meta, "usedMetadataSpace": 0, "provisionedSpace": provisioned,
        "usedSpace": used_space, "nonZeroBlocks": blocks_used, "uniqueBlocks": blocks_used,
        "uniqueBlocksUsedSpace": used_space,
        "zeroBlocks": max(provisioned // 4096 - blocks_used, 0), "timestamp": now_iso(),
    }


