"""Every foundation method through the official SDK's typed models, against a real process,
and the raw results checked field by field against the wire contract."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from solidfire.common import ApiServerError
from solidfire.models import NewDrive

from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess, wait_until

READ_METHODS = [
    "GetAPI", "GetClusterInfo", "ListActiveNodes", "ListAllNodes", "ListDrives",
    "GetClusterCapacity", "ListClusterAdmins", "ListClusterFaults", "ListAsyncResults",
    "GetDriveConfig",
]


@pytest.mark.parametrize("method", READ_METHODS)
def test_raw_results_are_complete(sealbox: SealboxProcess, method: str) -> None:
    envelope = sealbox.rpc(method)
    assert "error" not in envelope, envelope
    assert_complete(method, envelope["result"])


def test_cluster_state_is_complete(sealbox: SealboxProcess) -> None:
    result = sealbox.rpc("GetClusterState", {"force": True})["result"]
    assert_complete("GetClusterState", result)
    assert result["state"] == "Active"
    assert len(result["nodes"]) == 4


def test_sdk_reads_the_cluster(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    assert sf.api_version == 12.3
    info = sf.get_cluster_info().cluster_info
    assert isinstance(info.uuid, uuid.UUID)
    assert info.software_encryption_at_rest_state == "enabled"
    assert info.encryption_at_rest_state == "disabled"
    assert info.rep_count == 2
    nodes = sf.list_active_nodes().nodes
    assert [n.name for n in nodes] == [f"sealbox-node-{i}" for i in range(1, 5)]
    assert all(isinstance(n.uuid, uuid.UUID) for n in nodes)
    drives = sf.list_drives().drives
    assert len(drives) == 12
    assert {d.status for d in drives} == {"active"}
    assert sorted(d.type for d in drives).count("volume") == 4
    cap = sf.get_cluster_capacity().cluster_capacity
    assert cap.max_used_space == 8 * 64 * 2**20
    assert cap.max_used_metadata_space == 4 * 64 * 2**20


def test_sdk_drive_config(sealbox: SealboxProcess) -> None:
    """GetDriveConfig (a node method in the SDK, reachable on any port but 443) parses into
    the SDK's models: every node's drives, or one node's with the ``nodeID`` addition."""
    config = sealbox.element().get_drive_config().drive_config
    assert len(config.drives) == 12 and config.num_total_actual == 12
    assert (config.num_slice_expected, config.num_block_expected) == (4, 8)
    listed = {d["serial"]: d for d in sealbox.rpc("ListDrives")["result"]["drives"]}
    for drive in config.drives:
        assert drive.connected and drive.security_supported and isinstance(drive.uuid, uuid.UUID)
        assert not drive.security_enabled and not drive.security_locked  # no hardware EAR
        assert drive.size == listed[drive.serial]["capacity"]
        assert drive.drive_type == ("Slice" if listed[drive.serial]["type"] == "volume"
                                    else "Block")
    assert len({d.uuid for d in config.drives}) == 12
    one = sealbox.rpc("GetDriveConfig", {"nodeID": 3})["result"]["driveConfig"]
    node3 = {s for s, d in listed.items() if d["nodeID"] == 3}
    assert {d["serial"] for d in one["drives"]} == node3 and one["numTotalExpected"] == 3
    err = sealbox.rpc("GetDriveConfig", {"nodeID": 99})["error"]
    assert err["name"] == "xNodeIDDoesNotExist" and "99" in err["message"]
    err = sealbox.rpc("GetDriveConfig", {"nodeID": "three"})["error"]
    assert err["name"] == "xInvalidParameter" and "nodeID" in err["message"]


def test_sdk_admins(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    new_id = sf.add_cluster_admin(
        username="reader", password="reader-password", access=["read"], accept_eula=True
    ).cluster_admin_id
    admins = {a.username: a for a in sf.list_cluster_admins().cluster_admins}
    assert admins["reader"].cluster_admin_id == new_id
    assert admins["reader"].access == ["read"]
    # A read-only admin can read but not change anything.
    reader = sealbox.element("reader", "reader-password")
    assert reader.list_drives().drives
    with pytest.raises(ApiServerError) as err:
        reader.add_cluster_admin(
            username="x" * 5, password="password123", access=["read"], accept_eula=True
        )
    assert err.value.error_name == "xPermissionDenied"
    with pytest.raises(ApiServerError) as err:
        sf.add_cluster_admin(
            username="reader", password="another-one", access=["read"], accept_eula=True
        )
    assert "already exists" in err.value.message


def test_sdk_faults_and_async_results(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    assert sf.list_cluster_faults(fault_types="current").faults == []
    sf.clear_cluster_faults(fault_types="all")
    assert sf.list_async_results().async_handles == []
    with pytest.raises(ApiServerError) as err:
        sf.get_async_result(async_handle=999)
    assert err.value.error_name == "xDBNoSuchPath"
    assert "/asyncresults/999" in err.value.message


def test_sdk_create_cluster_refused_twice(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    with pytest.raises(ApiServerError) as err:
        sf.create_cluster(
            mvip="127.0.0.1", svip="127.0.0.1", username="admin", password="password123",
            nodes=["127.0.1.1"], accept_eula=True,
        )
    assert err.value.error_name == "xAPINotPermitted"
    assert "already exists" in err.value.message


def test_create_cluster_flow(tmp_path: Path) -> None:
    """The Element flow: nodes pending, CreateCluster, then AddDrives as an async job."""
    proc = SealboxProcess(tmp_path / "data", extra=["--no-create"]).start()
    try:
        sf = proc.element()
        state = sf.get_cluster_state(force=True)
        assert state.state == "Available"
        pending = sf.list_all_nodes()
        assert len(pending.pending_nodes) == 4 and pending.nodes == []
        assert_complete("ListAllNodes", proc.rpc("ListAllNodes")["result"])
        with pytest.raises(ApiServerError) as err:
            sf.get_cluster_info()
        assert "CreateCluster" in err.value.message
        sf.create_cluster(
            mvip="127.0.0.1", svip="127.0.0.1", username="admin", password=proc.password,
            nodes=["127.0.1.1", "127.0.1.2", "sealbox-node-3"], accept_eula=True,
            enable_software_encryption_at_rest=False,
        )
        info = sf.get_cluster_info().cluster_info
        assert info.software_encryption_at_rest_state == "disabled"
        assert len(sf.list_active_nodes().nodes) == 3
        faults = sf.list_cluster_faults(fault_types="current").faults
        assert [f.code for f in faults] == ["driveAvailable"]
        drives = [d for d in sf.list_drives().drives if d.node_id in (1, 2, 3)]
        assert {d.status for d in drives} == {"available"}
        handle = sf.add_drives([NewDrive(drive_id=d.drive_id) for d in drives]).async_handle

        def done() -> dict[str, object] | None:
            r: dict[str, object] = sf.get_async_result(async_handle=handle, keep_result=True)
            return r if r["status"] == "complete" else None

        result = wait_until(done, 20, "AddDrives to complete")
        assert result["resultType"] == "DriveAdd" and "error" not in result
        assert {d.status for d in sf.list_drives().drives if d.node_id in (1, 2, 3)} == {"active"}
        listed = sf.list_async_results(async_result_types=["DriveAdd"]).async_handles
        assert [(h.async_result_id, h.completed, h.success) for h in listed] == [
            (handle, True, True)
        ]
        faults = sf.list_cluster_faults(fault_types="resolved").faults
        assert [f.code for f in faults] == ["driveAvailable"] and faults[0].resolved
        assert_complete("ListClusterFaults", proc.rpc("ListClusterFaults")["result"])
        sf.clear_cluster_faults()
        assert sf.list_cluster_faults().faults == []
    finally:
        proc.stop()
