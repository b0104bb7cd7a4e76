"""The provisioned drive stack: sealbox Drive on an emulated SED on a file (storage/disk.py)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.disk import Disk, probe, sed_of
from sealbox.storage.drive import Drive
from sealbox.storage.header import EncryptionMode
from sealbox.storage.sed_errors import SedAuthenticationFailed, SedLocked, SedLockedOut

SIZE = 4 << 20
MK_ID = "7a1c1d52-4a39-4d5b-9d4e-0a8f5b2e3c11"
PATTERN = b"sealbox-disk-pattern-" * 195 + b"x"  # 4096 bytes


class OneKey:
    def __init__(self, key: Secret) -> None:
        self.key = key

    def get(self, master_key_id: str) -> Secret:
        return self.key


def _pattern_sector() -> bytes:
    assert len(PATTERN) == 4096
    return PATTERN


def test_a_new_disk_is_a_sed_with_a_drive_on_it(tmp_path: Path) -> None:
    ident = uuid.uuid4()
    with Disk.create(tmp_path / "d.img", SIZE, drive_uuid=ident) as disk:
        drive = disk.drive()
        sed = sed_of(drive)
        assert sed is not None and not sed.locking_enabled
        assert drive.uuid == ident == sed.media_id
        drive.write(3, _pattern_sector())
        drive.flush()
    assert probe(tmp_path / "d.img") == ident
    raw = (tmp_path / "d.img").read_bytes()
    assert os.stat(tmp_path / "d.img").st_size == SIZE
    assert PATTERN[:64] not in raw  # the SED encrypts even with locking off
    with Disk.open(tmp_path / "d.img") as disk:
        assert not disk.locked
        assert disk.drive().read(3, 1) == _pattern_sector()


def test_locking_hides_even_the_drive_header_until_the_ak_unlocks(tmp_path: Path) -> None:
    ak = Secret(os.urandom(32))
    mk = Secret(os.urandom(32))
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        drive = disk.drive()
        drive.enable_software_encryption(MK_ID, mk)
        drive.write(0, _pattern_sector())
        drive.flush()
        sed = sed_of(drive)
        assert sed is not None
        sed.enable_locking(ak)
        assert drive.read(0, 1) == _pattern_sector()  # unlocked until power-off
    with Disk.open(tmp_path / "d.img") as disk:
        assert disk.locked
        with pytest.raises(SedLocked):
            disk.drive()
        disk.unlock(ak)
        drive = disk.drive()
        assert drive.encryption is EncryptionMode.SOFTWARE and drive.locked
        drive.unlock(OneKey(mk))
        assert drive.read(0, 1) == _pattern_sector()


def test_wrong_aks_are_counted_and_lock_the_disk_out(tmp_path: Path) -> None:
    ak = Secret(os.urandom(32))
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        sed = sed_of(disk.drive())
        assert sed is not None
        sed.enable_locking(ak)
    with Disk.open(tmp_path / "d.img", max_attempts=2) as disk:
        for _ in range(2):
            with pytest.raises(SedAuthenticationFailed):
                disk.unlock(Secret(os.urandom(32)))
        with pytest.raises(SedLockedOut):
            disk.unlock(ak)
    with Disk.open(tmp_path / "d.img", max_attempts=2) as disk:  # power cycle
        disk.unlock(ak)
        assert disk.drive().read(0, 1) == bytes(4096)


def test_secure_erase_makes_old_data_unreadable_and_needs_no_ak(tmp_path: Path) -> None:
    ak = Secret(os.urandom(32))
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        drive = disk.drive()
        drive.write(5, _pattern_sector())
        drive.flush()
        sed = sed_of(drive)
        assert sed is not None
        sed.enable_locking(ak)
        ident = drive.uuid
    with Disk.open(tmp_path / "d.img") as disk:
        assert disk.locked
        drive = disk.secure_erase()
        assert drive.uuid == ident and not disk.locked
        assert drive.read(5, 1) != _pattern_sector()
    with Disk.open(tmp_path / "d.img") as disk:
        assert not disk.locked  # locking is off after an erase
        assert disk.drive().read(5, 1) != _pattern_sector()


def test_a_plain_drive_file_still_opens(tmp_path: Path) -> None:
    Drive.create(tmp_path / "old.img", SIZE).close()
    with Disk.open(tmp_path / "old.img") as disk:
        assert disk.sed is None and not disk.locked
        assert disk.drive().sector_count > 0
        assert probe(tmp_path / "old.img") == disk.drive().uuid


def test_large_writes_and_reads_cross_the_staging_buffer(tmp_path: Path) -> None:
    data = os.urandom(300 * 4096)  # more than one 1 MiB staging step
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        drive = disk.drive()
        drive.write(10, data)
        assert drive.read(10, 300) == data
