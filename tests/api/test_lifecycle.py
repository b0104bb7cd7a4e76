"""``sealbox up`` as an operator runs it: restarts keep everything, one process per data dir,
clean stop on signals, and ``sealbox status``."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from solidfire.models import NewDrive

from tests.support.proc import SealboxProcess, wait_until


def test_restart_keeps_cluster_admins_faults_and_async_results(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data", extra=["--no-create"]).start()
    try:
        sf = proc.element()
        sf.create_cluster(mvip="127.0.0.1", svip="127.0.0.1", username="admin",
                          password=proc.password, nodes=["127.0.1.1", "127.0.1.2"],
                          accept_eula=True)
        uuid_before = sf.get_cluster_info().cluster_info.uuid
        sf.add_cluster_admin(username="ops", password="ops-password", access=["drives"],
                             accept_eula=True)
        drive = next(d for d in sf.list_drives().drives if d.node_id == 1)
        handle = sf.add_drives([NewDrive(drive_id=drive.drive_id)]).async_handle
        wait_until(lambda: sf.get_async_result(async_handle=handle, keep_result=True)["status"]
                   == "complete", 20, "the add job")
        faults_before = sf.list_cluster_faults().faults

        proc.restart()
        sf = proc.element()
        assert sf.get_cluster_info().cluster_info.uuid == uuid_before
        assert "ops" in {a.username for a in sf.list_cluster_admins().cluster_admins}
        assert proc.element("ops", "ops-password").list_drives().drives
        after = sf.list_cluster_faults().faults
        assert [(f.cluster_fault_id, f.code, f.resolved) for f in after] == [
            (f.cluster_fault_id, f.code, f.resolved) for f in faults_before
        ]
        result = sf.get_async_result(async_handle=handle)
        assert result["status"] == "complete" and result["resultType"] == "DriveAdd"
        assert "password:   unchanged" in "".join(proc.output)
    finally:
        proc.stop()


def test_second_up_on_same_data_dir_refuses(sealbox: SealboxProcess) -> None:
    other = SealboxProcess(sealbox.data_dir)
    env = dict(os.environ, SEALBOX_ADMIN_PASSWORD="whatever-password")
    out = subprocess.run(other.command(), capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "already running" in out.stderr and str(sealbox.data_dir) in out.stderr
    assert sealbox.element().get_cluster_info().cluster_info.name == "sealbox"


def test_sigint_and_sigterm_stop_cleanly(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data").start()
    assert proc.stop(signal.SIGINT) == 0
    proc.start()
    assert proc.stop(signal.SIGTERM) == 0


def test_generated_password_is_printed_once_and_works(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k != "SEALBOX_ADMIN_PASSWORD"}
    p = subprocess.Popen(proc.command(), stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout is not None
        lines = [p.stdout.readline() for _ in range(4)]
        password = next(ln.split()[1] for ln in lines if ln.strip().startswith("password:"))
        assert "shown only once" in "".join(lines)
        proc.password = password
        assert proc.element().get_cluster_info().cluster_info.name == "sealbox"
    finally:
        p.terminate()
        p.wait(20)
        if p.stdout is not None:
            p.stdout.close()
    # The password is never stored in plaintext.
    db = (tmp_path / "data" / "sealbox.db").read_bytes()
    assert password.encode() not in db
    assert password not in (tmp_path / "data" / "sealbox.log").read_text()


def test_data_dir_files_are_private(sealbox: SealboxProcess) -> None:
    for name in ("tls/api.key", "sealbox.db", "sealbox.log"):
        mode = stat.S_IMODE((sealbox.data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    for drive in (sealbox.data_dir / "drives").rglob("*.img"):
        st = drive.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, drive
        assert st.st_blocks * 512 < st.st_size // 16  # created sparse


def test_status_json_and_tables(sealbox: SealboxProcess) -> None:
    cmd = [sys.executable, "-m", "sealbox.cli", "status", "--data-dir", str(sealbox.data_dir)]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, check=True)
    info = json.loads(out.stdout)
    assert info["cluster"]["name"] == "sealbox"
    assert len(info["nodes"]) == 4 and len(info["drives"]) == 12
    assert info["encryption"]["softwareEncryptionAtRestState"] == "enabled"
    key = sealbox.rpc("GetSoftwareEncryptionAtRestInfo")["result"]["masterKeyInfo"]
    assert info["encryption"]["masterKeyInfo"] == key
    assert key["keyManagementType"] == "internal" and info["encryption"]["rekey"] is None
    wide = dict(os.environ, COLUMNS="200")  # no wrapping inside the line checked below
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True,
                           env=wide).stdout
    assert "drives" in table and "sealbox-node-4" in table and "current faults" in table
    assert f"master key: {key['keyID']} (internal, held by this data dir" in table


def test_audit_log_records_changes_without_secrets(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    sf.add_cluster_admin(username="auditee", password="secret-pass-123", access=["read"],
                         accept_eula=True)
    env = sealbox.rpc("AddClusterAdmin", {"username": "auditee", "password": "another-pass-1",
                                          "access": ["read"], "acceptEula": True})
    assert env["error"]["name"] == "xObjectExists"
    import sqlite3

    conn = sqlite3.connect(f"file:{sealbox.data_dir / 'sealbox.db'}?mode=ro", uri=True)
    rows = [json.loads(b) for (b,) in conn.execute(
        "SELECT body FROM docs WHERE coll = 'audit' ORDER BY id")]
    conn.close()
    mine = [r for r in rows if r["method"] == "AddClusterAdmin"][-2:]
    assert [(r["user"], r["outcome"]) for r in mine] == [("admin", "success"), ("admin", "error")]
    assert "password" in mine[0]["params"]
    text = json.dumps(rows) + (sealbox.data_dir / "sealbox.log").read_text()
    assert "secret-pass-123" not in text and "another-pass-1" not in text
