"""Nodes and drives: provisioned at first start, listed as Element lists them.

A node is a logical storage server inside this process, with an address in 127.0.1.0/24 so
that each has a distinct name on the wire (Element's ``CreateCluster`` names nodes by address).
Each node's first drive is its metadata (slice) drive, the others are block drives; drive files
are created sparse, so a large default costs no disk until it is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sealbox.storage.disk import Disk
from sealbox.store.base import ConfigStore, Doc, Txn

NODES = "nodes"
DRIVES = "drives"


class NodeState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"


class DriveRole(StrEnum):
    SLICE = "slice"
    BLOCK = "block"


class DriveStatus(StrEnum):
    AVAILABLE = "available"
    ACTIVE = "active"
    FAILED = "failed"
    REMOVING = "removing"
    ERASING = "erasing"


@dataclass(frozen=True)
class Layout:
    nodes: int
    drives_per_node: int
    drive_size: int


def node_address(node_id: int) -> str:
    return f"127.0.1.{node_id}"


def provision(txn: Txn, data_dir: Path, layout: Layout) -> None:
    """Create the nodes and their drive files (first start only)."""
    for n in range(1, layout.nodes + 1):
        node_id = txn.next_id(NODES)
        txn.put(NODES, node_id, {
            "nodeID": node_id, "pendingNodeID": node_id, "name": f"sealbox-node-{node_id}",
            "uuid": str(uuid.uuid4()), "state": str(NodeState.PENDING),
            "address": node_address(node_id),
        })
        for slot in range(layout.drives_per_node):
            role = DriveRole.SLICE if slot == 0 else DriveRole.BLOCK
            path = data_dir / "drives" / f"node{n}" / f"drive{slot}.img"
            add_drive(txn, node_id, slot, role, path, layout.drive_size)


def add_drive(
    txn: Txn, node_id: int, slot: int, role: DriveRole, path: Path, size: int
) -> int:
    """Record a drive as ``available``, formatting its file (sparse) if it does not exist:
    an emulated self-encrypting drive, locking off, with a sealbox drive on it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        Disk.create(path, size).close()
    drive_id = txn.next_id(DRIVES)
    txn.put(DRIVES, drive_id, {
        "driveID": drive_id, "nodeID": node_id, "slot": slot, "role": str(role),
        "path": str(path), "capacity": size, "serial": f"sealbox-{uuid.uuid4().hex[:16]}",
        "status": str(DriveStatus.AVAILABLE), "failureDetail": "",
        "securityFaultReason": "none", "keyProviderID": None, "keyID": None,
    })
    return drive_id


def node_info(doc: Doc) -> Doc:
    """The Element ``Node`` object."""
    addr = doc["address"]
    return {
        "nodeID": doc["nodeID"], "associatedMasterServiceID": doc["nodeID"],
        "associatedFServiceID": 0, "fibreChannelTargetPortGroup": None, "name": doc["name"],
        "platformInfo": _platform(), "role": "Storage", "softwareVersion": _version(),
        "cip": addr, "cipi": "lo", "mip": addr, "mipi": "lo", "sip": addr, "sipi": "lo",
        "uuid": doc["uuid"], "virtualNetworks": [], "attributes": {}, "nodeSlot": "",
        "chassisName": doc["name"], "customProtectionDomainName": "",
        "maintenanceMode": "Disabled",
    }


def pending_node_info(doc: Doc) -> Doc:
    """The Element ``PendingNode`` object."""
    addr = doc["address"]
    return {
        "pendingNodeID": doc["pendingNodeID"], "assignedNodeID": 0, "name": doc["name"],
        "compatible": True, "platformInfo": _platform(), "role": "Storage",
        "cip": addr, "cipi": "lo", "mip": addr, "mipi": "lo", "sip": addr, "sipi": "lo",
        "softwareVersion": _version(), "uuid": doc["uuid"], "nodeSlot": "",
        "chassisName": doc["name"], "customProtectionDomainName": "",
    }


def drive_info(doc: Doc) -> Doc:
    """The Element ``DriveInfo`` object (slice drives are type ``volume`` in Element)."""
    info: Doc = {
        "driveID": doc["driveID"], "nodeID": doc["nodeID"], "capacity": doc["capacity"],
        "usableCapacity": doc["capacity"], "segmentFileSize": doc["capacity"],
        "serial": doc["serial"], "chassisSlot": str(doc["slot"]), "slot": doc["slot"],
        "status": doc["status"], "driveFailureDetail": doc["failureDetail"],
        "driveSecurityFaultReason": doc["securityFaultReason"],
        "type": "volume" if doc["role"] == DriveRole.SLICE else "block", "attributes": {},
    }
    if doc.get("keyProviderID") is not None:
        info["keyProviderID"] = doc["keyProviderID"]
    if doc.get("keyID") is not None:
        info["keyID"] = doc["keyID"]
    return info


def _platform() -> Doc:
    return {
        "nodeType": "SBX-SW", "chassisType": "software", "cpuModel": "virtual",
        "nodeMemoryGB": 0, "platformConfigVersion": _version(), "containerized": False,
    }


def _version() -> str:
    from sealbox import __version__

    return __version__


class Topology:
    """Read access to nodes and drives."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def nodes(self, state: NodeState | None = None) -> list[Doc]:
        with self._store.read() as txn:
            return [d for _, d in txn.list(NODES) if state is None or d["state"] == state]

    def drives(self) -> list[Doc]:
        with self._store.read() as txn:
            return [d for _, d in txn.list(DRIVES)]
