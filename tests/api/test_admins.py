"""Cluster admins after creation: ModifyClusterAdmin, RemoveClusterAdmin,
GetCurrentClusterAdmin through the official SDK against a real process, and the way back in
when every password is lost (``sealbox admin reset-password``), with ``sealbox audit``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from solidfire.common import ApiServerError

from tests.support.proc import SealboxProcess

PRIMARY = 1  # the admin CreateCluster made (`sealbox up` creates the cluster)


def _can_log_in(sealbox: SealboxProcess, username: str, password: str) -> bool:
    response = sealbox.post({"method": "GetCurrentClusterAdmin", "params": {}, "id": 1},
                            auth=(username, password))
    return response.status_code == 200 and "result" in response.json()


def _error(sealbox: SealboxProcess, method: str, params: dict[str, Any],
           auth: tuple[str, str] | None = None) -> dict[str, Any]:
    envelope = sealbox.rpc(method, params, auth=auth)
    assert "error" in envelope, envelope
    error: dict[str, Any] = envelope["error"]
    assert error["code"] == 500
    return error


def _admins(sealbox: SealboxProcess) -> dict[int, dict[str, Any]]:
    return {a["clusterAdminID"]: a for a in sealbox.rpc("ListClusterAdmins")["result"]
            ["clusterAdmins"]}


def _add(sealbox: SealboxProcess, username: str, password: str, access: list[str]) -> int:
    sf = sealbox.element()
    admin_id: int = sf.add_cluster_admin(username=username, password=password, access=access,
                                         accept_eula=True).cluster_admin_id
    return admin_id


def test_a_changed_password_works_at_once_and_the_old_one_stops(
        sealbox: SealboxProcess) -> None:
    admin_id = _add(sealbox, "operator1", "first-pass-1", ["volumes"])
    assert _can_log_in(sealbox, "operator1", "first-pass-1")  # now remembered in memory
    sealbox.element().modify_cluster_admin(admin_id, password="second-pass-2")
    assert not _can_log_in(sealbox, "operator1", "first-pass-1")
    assert _can_log_in(sealbox, "operator1", "second-pass-2")


def test_changed_access_decides_what_the_admin_may_call(sealbox: SealboxProcess) -> None:
    admin_id = _add(sealbox, "operator2", "operator-pass-2", ["volumes"])
    sealbox.element().modify_cluster_admin(admin_id, access=["read"],
                                           attributes={"team": "storage"})
    shown = _admins(sealbox)[admin_id]
    assert shown["access"] == ["read"] and shown["attributes"] == {"team": "storage"}
    assert "_hash" not in json.dumps(shown)
    auth = ("operator2", "operator-pass-2")
    error = _error(sealbox, "AddAccount", {"username": "tenant-x"}, auth=auth)
    assert error["name"] == "xPermissionDenied"
    assert "result" in sealbox.rpc("ListAccounts", auth=auth)


def test_the_primary_admin_cannot_lose_administrator_or_be_removed(
        sealbox: SealboxProcess) -> None:
    before = _admins(sealbox)
    error = _error(sealbox, "ModifyClusterAdmin", {"clusterAdminID": PRIMARY, "access": ["read"]})
    assert error["name"] == "xAPINotPermitted" and "primary" in error["message"]
    error = _error(sealbox, "RemoveClusterAdmin", {"clusterAdminID": PRIMARY})
    assert error["name"] == "xAPINotPermitted" and "primary" in error["message"]
    assert _admins(sealbox) == before
    assert _can_log_in(sealbox, "admin", sealbox.password)


def test_a_removed_admin_cannot_log_in(sealbox: SealboxProcess) -> None:
    admin_id = _add(sealbox, "leaver", "leaver-pass-1", ["read"])
    assert _can_log_in(sealbox, "leaver", "leaver-pass-1")
    sealbox.element().remove_cluster_admin(admin_id)
    assert admin_id not in _admins(sealbox)
    assert not _can_log_in(sealbox, "leaver", "leaver-pass-1")
    error = _error(sealbox, "RemoveClusterAdmin", {"clusterAdminID": admin_id})
    assert error["name"] == "xClusterAdminIDDoesNotExist"


def test_cluster_admin_access_alone_cannot_reach_administrator(sealbox: SealboxProcess) -> None:
    helper_id = _add(sealbox, "admin-helper", "helper-pass-1", ["clusterAdmin"])
    auth = ("admin-helper", "helper-pass-1")
    before = _admins(sealbox)
    for method, params in [
        ("ModifyClusterAdmin", {"clusterAdminID": helper_id, "access": ["administrator"]}),
        ("ModifyClusterAdmin", {"clusterAdminID": PRIMARY, "password": "taken-over-1"}),
        ("RemoveClusterAdmin", {"clusterAdminID": PRIMARY}),
        ("AddClusterAdmin", {"username": "sock-puppet", "password": "puppet-pass-1",
                             "access": ["administrator"], "acceptEula": True}),
    ]:
        error = _error(sealbox, method, params, auth=auth)
        assert error["name"] == "xAPINotPermitted", (method, error)
        assert "'administrator'" in error["message"]
    assert _admins(sealbox) == before
    # what clusterAdmin access is for still works
    other = _add(sealbox, "reader3", "reader-pass-3", ["read"])
    assert "result" in sealbox.rpc("ModifyClusterAdmin",
                                   {"clusterAdminID": other, "password": "reader-pass-4"},
                                   auth=auth)
    assert _can_log_in(sealbox, "reader3", "reader-pass-4")


def test_bad_input_names_the_parameter_and_changes_nothing(sealbox: SealboxProcess) -> None:
    admin_id = _add(sealbox, "checked", "checked-pass-1", ["read"])
    before = _admins(sealbox)
    cases = [
        ({"clusterAdminID": admin_id, "password": "short"}, "xInvalidParameter", "'password'"),
        ({"clusterAdminID": admin_id, "access": ["superuser"]}, "xInvalidParameter", "'access'"),
        ({"clusterAdminID": admin_id, "access": []}, "xInvalidParameter", "'access'"),
        ({"clusterAdminID": "one"}, "xInvalidParameter", "'clusterAdminID'"),
        ({"password": "long-enough-1"}, "xMissingParameter", "clusterAdminID"),
        ({"clusterAdminID": 9999, "password": "long-enough-1"}, "xClusterAdminIDDoesNotExist",
         "9999"),
    ]
    for params, name, needle in cases:
        error = _error(sealbox, "ModifyClusterAdmin", params)
        assert error["name"] == name, (params, error)
        assert needle in error["message"], (params, error)
    assert _admins(sealbox) == before
    assert _can_log_in(sealbox, "checked", "checked-pass-1")


def test_get_current_cluster_admin_is_the_caller(sealbox: SealboxProcess) -> None:
    me = sealbox.element().get_current_cluster_admin().cluster_admin
    assert (me.cluster_admin_id, me.username, me.access) == (PRIMARY, "admin", ["administrator"])
    _add(sealbox, "viewer", "viewer-pass-1", ["reporting"])
    viewer = sealbox.element("viewer", "viewer-pass-1").get_current_cluster_admin()
    assert viewer.cluster_admin.username == "viewer"
    assert viewer.cluster_admin.access == ["reporting"]


def test_sdk_raises_for_refusals(sealbox: SealboxProcess) -> None:
    with pytest.raises(ApiServerError) as caught:
        sealbox.element().remove_cluster_admin(PRIMARY)
    assert caught.value.error_name == "xAPINotPermitted"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # The reset reads SEALBOX_ADMIN_PASSWORD like `sealbox up`: not from this environment.
    env = {k: v for k, v in os.environ.items() if k != "SEALBOX_ADMIN_PASSWORD"}
    env["COLUMNS"] = "200"  # tables as wide as a terminal would show them
    return subprocess.run([sys.executable, "-m", "sealbox.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_lost_password_is_reset_offline_and_audited(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data").start()
    data_dir = str(proc.data_dir)
    try:
        proc.element().modify_cluster_admin(PRIMARY, password="changed-and-lost-1")
        refused = _cli("admin", "reset-password", "--data-dir", data_dir)
        assert refused.returncode != 0
        assert "stop it first" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        proc.stop()
    short = _cli("admin", "reset-password", "--data-dir", data_dir, "--password", "short")
    assert short.returncode == 2 and "'password'" in short.stderr
    assert "Traceback" not in short.stderr
    unknown = _cli("admin", "reset-password", "--data-dir", data_dir, "--username", "nobody")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr
    reset = _cli("admin", "reset-password", "--data-dir", data_dir)
    assert reset.returncode == 0, reset.stderr
    new_password = reset.stdout.split("password:", 1)[1].split()[0]
    assert len(new_password) >= 16
    proc.start()
    try:
        assert _can_log_in(proc, "admin", new_password)
        assert not _can_log_in(proc, "admin", "changed-and-lost-1")
        assert not _can_log_in(proc, "admin", proc.password)
    finally:
        proc.stop()
    shown = _cli("audit", "--data-dir", data_dir, "--json")
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    methods = [e["method"] for e in entries]
    assert methods[-2:] == ["ModifyClusterAdmin", "ResetClusterAdminPassword"]
    assert entries[-2]["params"] == ["clusterAdminID", "password"]
    assert entries[-1]["user"].startswith("local:")
    text = shown.stdout + (proc.data_dir / "sealbox.log").read_text()
    assert new_password not in text and "changed-and-lost-1" not in text
    assert "params=clusterAdminID,password" in (proc.data_dir / "sealbox.log").read_text()
    table = _cli("audit", "--data-dir", data_dir, "--last", "1")
    assert table.returncode == 0 and "ResetClusterAdminPassword" in table.stdout
