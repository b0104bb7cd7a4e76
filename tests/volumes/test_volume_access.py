"""A volume's Element access (ModifyVolume/CreateVolume ``access``) as NBD clients see it, on a
real sealbox process: readOnly is offered read-only and refuses every change with EPERM, locked
refuses new connections and every read and write of open ones, readWrite restores both, the
target values are locked to hosts, and all of it survives a restart."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.contract import contract
from tests.support.proc import SealboxProcess
from tests.volumes.qemu_io import QemuIo

MIB = 1 << 20
EPERM = "Operation not permitted"


@pytest.fixture(scope="module")
def account(sealbox: SealboxProcess) -> int:
    return int(sealbox.element().add_account(username="access").account_id)


@pytest.fixture
def sessions() -> Iterator[list[QemuIo]]:
    opened: list[QemuIo] = []
    yield opened
    for session in opened:
        session.close()


def _uri(sealbox: SealboxProcess, name: str) -> str:
    return f"nbd://127.0.0.1:{sealbox.nbd_port}/{name}"


def _run(*cmd: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    # libnbd prints the server's error message only in its debug output.
    env = dict(os.environ, LIBNBD_DEBUG="1") if debug else None
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)


def _ok(*cmd: str) -> str:
    result = _run(*cmd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _volume(sealbox: SealboxProcess, account: int, name: str, pattern: int,
            access: str | None = None) -> int:
    """A 4 MiB volume whose first MiB holds ``pattern`` (written before ``access`` is set)."""
    sf = sealbox.element()
    vid = int(sf.create_volume(name=name, account_id=account, total_size=4 * MIB).volume_id)
    _ok("qemu-io", "-f", "raw", _uri(sealbox, name), "-c", f"write -P {pattern:#x} 0 1M")
    if access is not None:
        sf.modify_volume(volume_id=vid, access=access)
    return vid


def _access(sealbox: SealboxProcess, vid: int) -> str:
    return str(sealbox.element().list_volumes(volume_ids=[vid]).volumes[0].access)


def _read_only(sealbox: SealboxProcess, name: str) -> bool:
    info = _ok("nbdinfo", _uri(sealbox, name))
    if "is_read_only: true" in info:
        return True
    assert "is_read_only: false" in info, info
    return False


def _write_refused_at_open(sealbox: SealboxProcess, name: str) -> bool:
    """qemu-io, asked to write, sees the export is read-only and cannot open it for writing."""
    out = _run("qemu-io", "-f", "raw", _uri(sealbox, name), "-c", "write -P 0x99 0 4096")
    assert out.returncode != 0 and "wrote" not in out.stdout, out.stdout
    return "Could not open image: Permission denied" in out.stderr


def _holds(sealbox: SealboxProcess, name: str, pattern: int) -> bool:
    """The first MiB still holds ``pattern``, read over a new connection."""
    out = _run("qemu-io", "-f", "raw", "-r", _uri(sealbox, name), "-c",
               f"read -P {pattern:#x} 0 1M")
    assert out.returncode == 0 and "read 1048576/1048576" in out.stdout, out.stdout + out.stderr
    return "Pattern verification failed" not in out.stdout


def _refusal(sealbox: SealboxProcess, name: str) -> str:
    """What a new client is told at NBD_OPT_GO: qemu's message, libnbd's must match it."""
    qemu = _run("qemu-img", "info", _uri(sealbox, name))
    assert qemu.returncode != 0
    info = _run("nbdinfo", _uri(sealbox, name), debug=True)
    assert info.returncode != 0
    start = qemu.stderr.index("server reported: ") + len("server reported: ")
    message = qemu.stderr[start:].splitlines()[0]
    assert f"server error message: {message}" in info.stderr, info.stderr
    return message


def test_read_only_is_offered_and_refuses_changes(sealbox: SealboxProcess, account: int,
                                                  sessions: list[QemuIo]) -> None:
    vid = _volume(sealbox, account, "ro", 0x11)
    before = QemuIo(_uri(sealbox, "ro"))  # connected while the volume is readWrite
    sessions.append(before)
    assert not _read_only(sealbox, "ro")
    sealbox.element().modify_volume(volume_id=vid, access="readOnly")
    assert _access(sealbox, vid) == "readOnly"
    assert _read_only(sealbox, "ro")
    assert _write_refused_at_open(sealbox, "ro")
    for change in ("write -P 0x22 0 4096", "write -z 0 4096", "discard 0 65536"):
        assert f"failed: {EPERM}" in before.run(change), change
    assert "failed" not in before.run("flush")
    assert "Pattern verification failed" not in before.run("read -P 0x11 0 1M")
    assert _holds(sealbox, "ro", 0x11)


def test_read_write_restores_writes(sealbox: SealboxProcess, account: int,
                                    sessions: list[QemuIo]) -> None:
    vid = _volume(sealbox, account, "rw-again", 0x11)
    before = QemuIo(_uri(sealbox, "rw-again"))
    sessions.append(before)
    sealbox.element().modify_volume(volume_id=vid, access="readOnly")
    assert f"failed: {EPERM}" in before.run("write -P 0x33 0 4096")
    sealbox.element().modify_volume(volume_id=vid, access="readWrite")
    assert not _read_only(sealbox, "rw-again")
    assert "wrote 4096/4096" in before.run("write -P 0x33 0 4096")
    _ok("qemu-io", "-f", "raw", _uri(sealbox, "rw-again"), "-c", "write -P 0x33 4096 1044480")
    assert _holds(sealbox, "rw-again", 0x33)


def test_locked_refuses_new_and_open_connections(sealbox: SealboxProcess, account: int,
                                                 sessions: list[QemuIo],
                                                 tmp_path: Path) -> None:
    vid = _volume(sealbox, account, "lk", 0x44)
    before = QemuIo(_uri(sealbox, "lk"))
    sessions.append(before)
    sealbox.element().modify_volume(volume_id=vid, access="locked")
    assert _access(sealbox, vid) == "locked"
    assert _refusal(sealbox, "lk") == "lk: volume is locked (access 'locked')"
    copy = _run("nbdcopy", _uri(sealbox, "lk"), str(tmp_path / "out.img"))
    assert copy.returncode != 0 and not (tmp_path / "out.img").exists()
    for request in ("read 0 4096", "write -P 0x55 0 4096", "write -z 0 4096", "discard 0 4096"):
        assert f"failed: {EPERM}" in before.run(request), request
    sealbox.element().modify_volume(volume_id=vid, access="readWrite")
    assert "Pattern verification failed" not in before.run("read -P 0x44 0 1M")
    _ok("nbdcopy", _uri(sealbox, "lk"), str(tmp_path / "out.img"))
    assert (tmp_path / "out.img").read_bytes()[:MIB] == b"\x44" * MIB


@pytest.mark.parametrize("access", ["replicationTarget", "snapMirrorTarget"])
def test_target_access_is_locked_to_hosts(sealbox: SealboxProcess, account: int,
                                          access: str) -> None:
    vid = _volume(sealbox, account, f"t-{access}", 0x66, access=access)
    assert _access(sealbox, vid) == access
    message = _refusal(sealbox, f"t-{access}")
    assert message.startswith(f"t-{access}: volume is locked (access '{access}'")
    sealbox.element().modify_volume(volume_id=vid, access="readWrite")
    assert _holds(sealbox, f"t-{access}", 0x66)


def test_create_volume_with_access(sealbox: SealboxProcess, account: int) -> None:
    sf = sealbox.element()
    sf.create_volume(name="born-ro", account_id=account, total_size=MIB, access="readOnly")
    assert _read_only(sealbox, "born-ro")
    assert _write_refused_at_open(sealbox, "born-ro")
    assert _holds(sealbox, "born-ro", 0)
    sf.create_volume(name="born-locked", account_id=account, total_size=MIB, access="locked")
    assert _refusal(sealbox, "born-locked") == "born-locked: volume is locked (access 'locked')"


def test_access_takes_the_contract_values_only(sealbox: SealboxProcess, account: int) -> None:
    vid = _volume(sealbox, account, "any-access", 0x77)
    for value in contract()["types"]["VolumeAccess"]["values"]:
        sealbox.element().modify_volume(volume_id=vid, access=value)
        assert _access(sealbox, vid) == value
    sealbox.element().modify_volume(volume_id=vid, access="readWrite")
    response = sealbox.post({"method": "ModifyVolume", "id": 1,
                             "params": {"volumeID": vid, "access": "writeOnly"}})
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["name"] == "xInvalidParameter" and error["code"] == 500
    assert "'access'" in error["message"] and "replicationTarget" in error["message"]
    assert _access(sealbox, vid) == "readWrite" and not _read_only(sealbox, "any-access")


def test_access_survives_restart(sealbox: SealboxProcess, account: int) -> None:
    ro = _volume(sealbox, account, "keep-ro", 0x12, access="readOnly")
    locked = _volume(sealbox, account, "keep-locked", 0x13, access="locked")
    sealbox.restart()
    assert _access(sealbox, ro) == "readOnly" and _access(sealbox, locked) == "locked"
    assert _read_only(sealbox, "keep-ro")
    assert _write_refused_at_open(sealbox, "keep-ro") and _holds(sealbox, "keep-ro", 0x12)
    assert _refusal(sealbox, "keep-locked").endswith("volume is locked (access 'locked')")
