"""The official NetApp ``sfcli`` (solidfire-cli 1.7.0.154) against a real ``sealbox up``.

sfcli exits 0 even when the API answers an error (it only logs the message), so these tests
read what it prints: ``-j`` gives the raw JSON-RPC envelope, the default output is the SDK's
result objects dumped by jsonpickle (which proves the SDK could parse the answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.proc import SealboxProcess

SFCLI = Path(sys.executable).parent / "sfcli"
NODES, DRIVES_PER_NODE = 4, 3  # the SealboxProcess defaults
DRIVE_SIZE = 64 << 20
CLI_TIMEOUT = 60
Env = dict[str, str]

pytestmark = pytest.mark.skipif(not SFCLI.exists(), reason="sfcli is not installed in the venv")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """A private HOME, and no SOLIDFIRE_* variables that would change sfcli's options."""
    home = tmp_path_factory.mktemp("sfcli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLIDFIRE_")}
    return env | {"HOME": str(home), "PYTHONWARNINGS": "ignore"}


def sfcli(
    sealbox: SealboxProcess, env: Env, *args: str, password: str | None = None,
    raw_json: bool = True,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(SFCLI), "-m", "127.0.0.1", "-q", str(sealbox.port), "-u", "admin",
        "-p", password or sealbox.password, "--nocache", *(["-j"] if raw_json else []), *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT, check=False,
        stdin=subprocess.DEVNULL,
    )


def result_of(sealbox: SealboxProcess, env: Env, *args: str) -> dict[str, Any]:
    """The ``result`` of ``sfcli -j <args>``, failing with sfcli's own output otherwise."""
    done = sfcli(sealbox, env, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    try:
        envelope = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"sfcli {args} printed no JSON: {done.stdout!r} {done.stderr!r}")
    assert "error" not in envelope, (args, envelope)
    result: dict[str, Any] = envelope["result"]
    return result


def test_cluster_getinfo_shows_the_cluster(sealbox: SealboxProcess, cli_env: Env) -> None:
    info = result_of(sealbox, cli_env, "cluster", "getinfo")["clusterInfo"]
    assert info["name"] == "sealbox"
    assert info["mvip"] == "127.0.0.1"
    assert info["softwareEncryptionAtRestState"] == "enabled"
    assert len(info["ensemble"]) == NODES
    assert info["uuid"] == sealbox.rpc("GetClusterInfo")["result"]["clusterInfo"]["uuid"]


def test_cluster_getinfo_parses_into_sdk_objects(
    sealbox: SealboxProcess, cli_env: Env
) -> None:
    """Without ``-j`` sfcli prints the SDK's model objects: the answer passed the SDK's parsing
    (the UUID and the protection-scheme enum included)."""
    done = sfcli(sealbox, cli_env, "cluster", "getinfo", raw_json=False)
    assert done.returncode == 0, done.stderr
    dumped = json.loads(done.stdout)
    assert dumped["py/object"] == "solidfire.models.GetClusterInfoResult"
    info = dumped["cluster_info"]
    assert info["name"] == "sealbox"
    assert info["default_protection_scheme"]["_value"] == "doubleHelix"
    assert info["uuid"]["py/object"] == "uuid.UUID"
    api_uuid = sealbox.rpc("GetClusterInfo")["result"]["clusterInfo"]["uuid"]
    assert info["uuid"]["hex"] == api_uuid.replace("-", "")


def test_drive_list_shows_every_drive_active(
    sealbox: SealboxProcess, cli_env: Env
) -> None:
    drives = result_of(sealbox, cli_env, "drive", "list")["drives"]
    assert [d["driveID"] for d in drives] == list(range(1, NODES * DRIVES_PER_NODE + 1))
    assert {d["status"] for d in drives} == {"active"}
    assert {d["nodeID"] for d in drives} == set(range(1, NODES + 1))
    assert all(d["capacity"] == DRIVE_SIZE for d in drives)
    assert len({d["serial"] for d in drives}) == len(drives)
    # one metadata ("volume") drive per node, the rest block drives
    assert sorted(d["nodeID"] for d in drives if d["type"] == "volume") == list(range(1, NODES + 1))


def test_drive_getconfig_shows_what_the_drives_report(
    sealbox: SealboxProcess, cli_env: Env
) -> None:
    config = result_of(sealbox, cli_env, "drive", "getconfig")["driveConfig"]
    assert config["numTotalExpected"] == config["numTotalActual"] == NODES * DRIVES_PER_NODE
    assert config["numSliceActual"] == NODES
    assert all(d["connected"] and d["securitySupported"] and not d["securityLocked"]
               for d in config["drives"])
    done = sfcli(sealbox, cli_env, "drive", "getconfig", raw_json=False)
    assert done.returncode == 0, done.stderr
    dumped = json.loads(done.stdout)  # the SDK parsed it into its models
    assert dumped["py/object"] == "solidfire.models.GetDriveConfigResult"
    assert len(dumped["drive_config"]["drives"]) == NODES * DRIVES_PER_NODE


def test_node_listactive_names_the_nodes(sealbox: SealboxProcess, cli_env: Env) -> None:
    nodes = result_of(sealbox, cli_env, "node", "listactive")["nodes"]
    assert [n["nodeID"] for n in nodes] == list(range(1, NODES + 1))
    assert [n["name"] for n in nodes] == [f"sealbox-node-{i}" for i in range(1, NODES + 1)]


def test_node_listall_has_no_pending_nodes(sealbox: SealboxProcess, cli_env: Env) -> None:
    result = result_of(sealbox, cli_env, "node", "listall")
    assert [n["name"] for n in result["nodes"]] == [
        f"sealbox-node-{i}" for i in range(1, NODES + 1)
    ]
    assert result["pendingNodes"] == []
    assert result["pendingActiveNodes"] == []


def test_cluster_listfaults_has_no_open_drive_fault(
    sealbox: SealboxProcess, cli_env: Env
) -> None:
    """Every drive is in use, so nothing says drives are waiting to be added."""
    faults = result_of(sealbox, cli_env, "cluster", "listfaults")["faults"]
    assert isinstance(faults, list)
    open_codes = {f["code"] for f in faults if not f["resolved"]}
    assert "driveAvailable" not in open_codes
    for f in faults:
        assert {"clusterFaultID", "code", "severity", "type", "details", "date"} <= set(f)
    assert faults == sealbox.rpc("ListClusterFaults")["result"]["faults"]


def test_cluster_getcapacity_counts_the_drives(
    sealbox: SealboxProcess, cli_env: Env
) -> None:
    cap = result_of(sealbox, cli_env, "cluster", "getcapacity")["clusterCapacity"]
    block_drives = NODES * (DRIVES_PER_NODE - 1)
    assert cap["maxUsedSpace"] == block_drives * DRIVE_SIZE
    assert cap["maxUsedMetadataSpace"] == NODES * DRIVE_SIZE
    assert cap["usedSpace"] >= 0
    assert cap["maxProvisionedSpace"] > 0


def test_cluster_getapi_offers_12_3(sealbox: SealboxProcess, cli_env: Env) -> None:
    api = result_of(sealbox, cli_env, "cluster", "getapi")
    assert api["currentVersion"] == "12.3"
    assert {"7.0", "12.3"} <= set(api["supportedVersions"])
    assert all(isinstance(v, str) for v in api["supportedVersions"])
    assert {"GetClusterInfo", "ListDrives", "GetAPI"} <= set(api["12.3"])


def test_clusteradmin_list_shows_the_admin(sealbox: SealboxProcess, cli_env: Env) -> None:
    admins = result_of(sealbox, cli_env, "clusteradmin", "list")["clusterAdmins"]
    admin = next(a for a in admins if a["username"] == "admin")
    assert admin["access"] == ["administrator"]
    assert admin["authMethod"] == "Cluster"
    assert all("password" not in json.dumps(a).lower() for a in admins)
    assert sealbox.password not in json.dumps(admins)


def test_cluster_listevents_shows_the_audit_log(sealbox: SealboxProcess, cli_env: Env) -> None:
    sealbox.rpc("AddAccount", {"username": "sfcli-events"})
    events = result_of(sealbox, cli_env, "cluster", "listevents")["events"]
    assert events[-1]["message"].startswith("AddAccount by admin: success")
    assert events == sealbox.rpc("ListEvents")["result"]["events"]
    parsed = sfcli(sealbox, cli_env, "cluster", "listevents", raw_json=False)
    assert parsed.returncode == 0 and "AddAccount by admin" in parsed.stdout, parsed.stderr


def test_async_listresults_matches_the_api(sealbox: SealboxProcess, cli_env: Env) -> None:
    handles = result_of(sealbox, cli_env, "async", "listresults")["asyncHandles"]
    assert isinstance(handles, list)
    assert handles == sealbox.rpc("ListAsyncResults")["result"]["asyncHandles"]


def test_an_api_error_is_printed(sealbox: SealboxProcess, cli_env: Env) -> None:
    """sfcli exits 0 on API errors (as it does against a real cluster): the error must be in
    what it prints."""
    done = sfcli(sealbox, cli_env, "async", "getresult", "--asynchandle", "999999")
    assert done.returncode == 0, done.stderr
    err = json.loads(done.stdout)["error"]
    assert err["name"] == "xDBNoSuchPath"
    assert "/asyncresults/999999" in err["message"]
    plain = sfcli(sealbox, cli_env, "async", "getresult", "--asynchandle", "999999",
                  raw_json=False)
    assert "/asyncresults/999999" in plain.stdout + plain.stderr


def test_wrong_password_is_refused(sealbox: SealboxProcess, cli_env: Env) -> None:
    done = sfcli(sealbox, cli_env, "cluster", "getinfo", password="not-the-password")
    assert done.returncode != 0
    assert "Bad Credentials" in done.stdout + done.stderr
    assert "sealbox" not in done.stdout  # no cluster info leaked
