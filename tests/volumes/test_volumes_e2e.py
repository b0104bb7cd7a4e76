"""Encrypted, two-copy volumes through the official SDK and real NBD clients, against a real
sealbox process: data goes in and comes back identical, never appears in plaintext on disk,
survives a restart, and survives losing one copy."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from solidfire.common import ApiServerError

from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess

MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("vol") / "data", drive_size="256MiB").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def account(cluster: SealboxProcess) -> int:
    return int(cluster.element().add_account(username="tenant").account_id)


def _uri(cluster: SealboxProcess, name: str) -> str:
    return f"nbd://127.0.0.1:{cluster.nbd_port}/{name}"


def _run(*cmd: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_volume_lifecycle_through_the_sdk(cluster: SealboxProcess, account: int) -> None:
    sf = cluster.element()
    created = sf.create_volume(name="life", account_id=account, total_size=10 * MIB + 1)
    assert created.volume.total_size == 11 * MIB  # rounded up to a whole MiB, as Element does
    vid = created.volume_id
    raw = cluster.rpc("ListVolumes", {"volumeIDs": [vid]})["result"]
    assert_complete("ListVolumes", raw)
    grown = sf.modify_volume(volume_id=vid, total_size=20 * MIB).volume
    assert grown.total_size == 20 * MIB
    err = cluster.rpc("ModifyVolume", {"volumeID": vid, "totalSize": MIB})["error"]
    assert err["name"] == "xInvalidParameter" and "only grow" in err["message"]
    assert sf.get_account_by_id(account_id=account).account.volumes == [vid]
    deleted = cluster.rpc("DeleteVolume", {"volumeID": vid})["result"]
    assert_complete("DeleteVolume", deleted)
    assert deleted["volume"]["status"] == "deleted" and deleted["volume"]["purgeTime"]
    assert [v.volume_id for v in sf.list_deleted_volumes().volumes] == [vid]
    assert vid not in [v.volume_id for v in sf.list_active_volumes().volumes]
    sf.restore_deleted_volume(volume_id=vid)
    assert vid in [v.volume_id for v in sf.list_active_volumes().volumes]
    sf.delete_volume(volume_id=vid)
    sf.purge_deleted_volume(volume_id=vid)
    assert sf.list_deleted_volumes().volumes == []
    with pytest.raises(ApiServerError) as e:
        sf.purge_deleted_volume(volume_id=vid)
    assert e.value.error_name == "xVolumeIDDoesNotExist"


def test_create_volume_refusals(cluster: SealboxProcess, account: int) -> None:
    cases = [
        ({"name": "x", "accountID": 999, "totalSize": MIB}, "xAccountIDDoesNotExist"),
        ({"name": "bad name!", "accountID": account, "totalSize": MIB}, "xInvalidParameter"),
        ({"name": "big", "accountID": account, "totalSize": 1 << 50}, "xInvalidParameter"),
        ({"name": "z", "accountID": account, "totalSize": 0}, "xInvalidParameter"),
    ]
    for params, name in cases:
        assert cluster.rpc("CreateVolume", params)["error"]["name"] == name, params
    cluster.rpc("CreateVolume", {"name": "dup", "accountID": account, "totalSize": MIB})
    err = cluster.rpc("CreateVolume", {"name": "dup", "accountID": account, "totalSize": MIB})
    assert err["error"]["name"] == "xObjectExists"


def test_qemu_img_and_nbdcopy_round_trip(cluster: SealboxProcess, account: int,
                                         tmp_path: Path) -> None:
    sf = cluster.element()
    sf.create_volume(name="rt", account_id=account, total_size=24 * MIB)
    data = _random_file(tmp_path / "in.img", 24 * MIB)
    _run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(tmp_path / "in.img"),
         _uri(cluster, "rt"))
    _run("nbdcopy", _uri(cluster, "rt"), str(tmp_path / "out.img"))
    assert (tmp_path / "out.img").read_bytes() == data
    _random_file(tmp_path / "in2.img", 24 * MIB)
    _run("nbdcopy", str(tmp_path / "in2.img"), _uri(cluster, "rt"))
    _run("qemu-img", "convert", "-f", "raw", "-O", "raw", _uri(cluster, "rt"),
         str(tmp_path / "out2.img"))
    assert (tmp_path / "out2.img").read_bytes() == (tmp_path / "in2.img").read_bytes()
    listing = _run("nbdinfo", "--list", f"nbd://127.0.0.1:{cluster.nbd_port}")
    assert 'export="rt"' in listing and "25165824" in listing
    cap = sf.get_cluster_capacity().cluster_capacity
    assert cap.used_space >= 2 * 24 * MIB  # two copies of every written chunk
    assert cap.provisioned_space >= 24 * MIB


def test_unaligned_writes_with_qemu_io(cluster: SealboxProcess, account: int) -> None:
    cluster.element().create_volume(name="unaligned", account_id=account, total_size=4 * MIB)
    uri = _uri(cluster, "unaligned")
    _run("qemu-io", "-f", "raw", uri, "-c", "write -P 0x11 0 65536")
    _run("qemu-io", "-f", "raw", uri, "-c", "write -P 0xab 1000 3000")
    out = _run("qemu-io", "-f", "raw", uri, "-c", "read -P 0xab 1000 3000",
               "-c", "read -P 0x11 0 1000", "-c", "read -P 0x11 4000 61536")
    assert "Pattern verification failed" not in out


def test_plaintext_never_reaches_the_disk(cluster: SealboxProcess, account: int,
                                          tmp_path: Path) -> None:
    cluster.element().create_volume(name="secret", account_id=account, total_size=4 * MIB)
    marker = b"SEALBOX-PLAINTEXT-MARKER-" + os.urandom(8).hex().encode()
    (tmp_path / "p.img").write_bytes((marker * (4 * MIB // len(marker) + 1))[:4 * MIB])
    _run("nbdcopy", str(tmp_path / "p.img"), _uri(cluster, "secret"))
    _run("nbdcopy", _uri(cluster, "secret"), str(tmp_path / "back.img"))
    assert (tmp_path / "back.img").read_bytes() == (tmp_path / "p.img").read_bytes()
    for path in cluster.data_dir.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path
    conn = sqlite3.connect(f"file:{cluster.data_dir / 'sealbox.db'}?mode=ro", uri=True)
    assert not conn.execute("SELECT 1 FROM docs WHERE body LIKE ?",
                            (f"%{marker.decode()}%",)).fetchall()
    conn.close()


def test_software_encryption_info(cluster: SealboxProcess) -> None:
    raw = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
    assert_complete("GetSoftwareEncryptionAtRestInfo", raw)
    assert raw["state"] == raw["status"] == "enabled" and raw["version"] == 1
    assert raw["masterKeyInfo"]["keyManagementType"] == "internal"
    info = cluster.element().get_software_encryption_at_rest_info()
    assert info.master_key_info.key_id is not None
    keyfile = next((cluster.data_dir / "keys" / "master").glob("*.mk"))
    assert keyfile.stat().st_mode & 0o777 == 0o600
    assert keyfile.stem == str(info.master_key_info.key_id)


def test_data_survives_restart(cluster: SealboxProcess, account: int, tmp_path: Path) -> None:
    cluster.element().create_volume(name="durable", account_id=account, total_size=8 * MIB)
    data = _random_file(tmp_path / "d.img", 8 * MIB)
    _run("nbdcopy", str(tmp_path / "d.img"), _uri(cluster, "durable"))
    cluster.restart()
    _run("nbdcopy", _uri(cluster, "durable"), str(tmp_path / "after.img"))
    assert (tmp_path / "after.img").read_bytes() == data


def _block_drives(cluster: SealboxProcess) -> list[Path]:
    return sorted(p for p in (cluster.data_dir / "drives").rglob("drive*.img")
                  if not p.name.startswith("drive0"))


def test_reads_survive_a_corrupted_copy(cluster: SealboxProcess, account: int,
                                        tmp_path: Path) -> None:
    cluster.element().create_volume(name="scarred", account_id=account, total_size=8 * MIB)
    data = _random_file(tmp_path / "s.img", 8 * MIB)
    _run("nbdcopy", str(tmp_path / "s.img"), _uri(cluster, "scarred"))
    # Scribble over the data area of one block drive: one copy of every chunk it holds.
    victim = _block_drives(cluster)[0]
    with open(victim, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        for offset in range(64 * 1024, size, 256 * 1024):
            f.seek(offset)
            f.write(os.urandom(4096))
    _run("nbdcopy", _uri(cluster, "scarred"), str(tmp_path / "r.img"))
    assert (tmp_path / "r.img").read_bytes() == data
