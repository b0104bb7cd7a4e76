"""Only the drives of cluster members are the cluster's: after ``sealbox up --no-create`` and a
CreateCluster that takes 3 of the 4 pending nodes, the 4th node's drives are not listed by
ListDrives and the drive methods refuse them as unknown (``xDriveIDDoesNotExist``), as in
Element, where a pending node's drives join the cluster only with the node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solidfire.common import ApiServerError
from solidfire.models import NewDrive

from tests.drives.helpers import sealbox_cli, wait_job
from tests.support.proc import SealboxProcess

OUTSIDER = 4
OUTSIDER_DRIVES = [10, 11, 12]  # node 4: slice drive 10, block drives 11 and 12


def test_a_pending_nodes_drives_cannot_be_added(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data", extra=["--no-create"]).start()
    try:
        sf = proc.element()
        sf.create_cluster(mvip="127.0.0.1", svip="127.0.0.1", username="admin",
                          password=proc.password, accept_eula=True,
                          nodes=["127.0.1.1", "127.0.1.2", "127.0.1.3"])
        listed = sf.list_drives().drives
        assert sorted(d.drive_id for d in listed) == list(range(1, 10))
        assert {d.node_id for d in listed} == {1, 2, 3}
        assert {d.status for d in listed} == {"available"}
        fault = next(f for f in sf.list_cluster_faults(fault_types="current").faults
                     if f.code == "driveAvailable")
        assert sorted(fault.drive_ids) == list(range(1, 10))

        with pytest.raises(ApiServerError) as e:
            sf.add_drives([NewDrive(drive_id=OUTSIDER_DRIVES[0])])
        assert e.value.error_name == "xDriveIDDoesNotExist"
        assert f"node {OUTSIDER}, which is not a cluster member" in e.value.message
        assert "ListAllNodes" in e.value.message
        # One outsider spoils the request: the member drives listed with it stay available.
        mixed = proc.rpc("AddDrives", {"drives": [{"driveID": 2}, {"driveID": 11}]})
        assert mixed["error"]["name"] == "xDriveIDDoesNotExist"
        for method in ("SecureEraseDrives", "RemoveDrives"):
            error = proc.rpc(method, {"drives": [12]})["error"]
            assert error["name"] == "xDriveIDDoesNotExist", (method, error)
        assert [n.pending_node_id for n in sf.list_all_nodes().pending_nodes] == [OUTSIDER]
        jobs = proc.rpc("ListAsyncResults", {})["result"]["asyncHandles"]
        assert jobs == []

        handle = sf.add_drives([NewDrive(drive_id=d.drive_id) for d in listed]).async_handle
        wait_job(proc, handle)
        assert {d.status for d in sf.list_drives().drives} == {"active"}
        # The outsider's drives are still there, untouched, in the node's own view.
        shown = json.loads(sealbox_cli("status", "--data-dir", str(proc.data_dir), "--json"))
        outsider = {d["driveID"]: d["status"] for d in shown["drives"]
                    if d["nodeID"] == OUTSIDER}
        assert outsider == dict.fromkeys(OUTSIDER_DRIVES, "available")
    finally:
        proc.stop()


def test_add_nodes_makes_a_pending_node_a_member_whose_drives_can_be_added(
        tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data", extra=["--no-create"]).start()
    try:
        early = proc.rpc("AddNodes", {"pendingNodes": [OUTSIDER]})["error"]
        assert early["name"] == "xAPINotPermitted" and "CreateCluster" in early["message"]
        sf = proc.element()
        sf.create_cluster(mvip="127.0.0.1", svip="127.0.0.1", username="admin",
                          password=proc.password, accept_eula=True,
                          nodes=["127.0.1.1", "127.0.1.2", "127.0.1.3"])
        for params, name in [({"pendingNodes": [99]}, "xNodeIDDoesNotExist"),
                             ({"pendingNodes": [1]}, "xAPINotPermitted"),
                             ({"pendingNodes": [OUTSIDER, 99]}, "xNodeIDDoesNotExist"),
                             ({"pendingNodes": []}, "xInvalidParameter"),
                             ({"pendingNodes": [OUTSIDER, OUTSIDER]}, "xInvalidParameter")]:
            assert proc.rpc("AddNodes", params)["error"]["name"] == name, params
        # nothing changed by the refusals
        assert [n.pending_node_id for n in sf.list_all_nodes().pending_nodes] == [OUTSIDER]

        added = sf.add_nodes([OUTSIDER]).nodes
        assert [(n.pending_node_id, n.node_id) for n in added] == [(OUTSIDER, OUTSIDER)]
        wait_job(proc, added[0].async_handle)
        assert [n.node_id for n in sf.list_active_nodes().nodes] == [1, 2, 3, OUTSIDER]
        assert sf.list_all_nodes().pending_nodes == []
        assert len(sf.get_cluster_info().cluster_info.ensemble) == 4
        mine = [d for d in sf.list_drives().drives if d.node_id == OUTSIDER]
        assert sorted(d.drive_id for d in mine) == OUTSIDER_DRIVES
        assert {d.status for d in mine} == {"available"}
        handle = sf.add_drives([NewDrive(drive_id=d.drive_id)
                                for d in sf.list_drives().drives]).async_handle
        wait_job(proc, handle)
        assert {d.status for d in sf.list_drives().drives} == {"active"}
        assert len(sf.list_drives().drives) == 12
        again = proc.rpc("AddNodes", {"pendingNodes": [OUTSIDER]})["error"]
        assert again["name"] == "xAPINotPermitted" and "already a member" in again["message"]
    finally:
        proc.stop()
