"""The provisioned drive stack: sealbox Drive on an emulated SED on a file (storage/disk.py)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage import drive_io
from sealbox.storage.disk import Disk, drive_data_offset, probe, sed_of
from sealbox.storage.drive import Drive
from sealbox.storage.drive_media import FileMedia, FileSectors, SedMedia
from sealbox.storage.header import EncryptionMode
from sealbox.storage.sed import SelfEncryptingDrive
from sealbox.storage.sed_errors import SedAuthenticationFailed, SedLocked, SedLockedOut
from sealbox.storage.xts_tweaks import UnitTweaks

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


def test_the_drive_data_area_starts_on_a_1_mib_unit_of_the_sed(tmp_path: Path) -> None:
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        drive = disk.drive()
        sed = sed_of(drive)
        assert sed is not None and sed.metadata.data_offset == 8
        assert drive.header.data_offset == drive_data_offset(sed) == 248
        assert (sed.metadata.data_offset + drive.header.data_offset) % 256 == 0
        assert drive.sector_count == SIZE // 4096 - 8 - 248
        drive.write(0, _pattern_sector())  # plain drive: the SED sees the data as is
        assert sed.read(248, 1) == _pattern_sector()
        erased = disk.secure_erase()
        assert erased.header.data_offset == 248  # a new drive on an erased SED: aligned too
    with Disk.open(tmp_path / "d.img") as disk:
        assert disk.drive().header.data_offset == 248


def test_a_disk_too_small_for_an_aligned_data_area_keeps_offset_8(tmp_path: Path) -> None:
    for size, offset in ((1 << 20, 8), ((2 << 20) - 4096, 8), (2 << 20, 248)):
        with Disk.create(tmp_path / f"{size}.img", size) as disk:
            drive = disk.drive()
            assert drive.header.data_offset == offset
            drive.write(drive.sector_count - 1, _pattern_sector())
            assert drive.read(drive.sector_count - 1, 1) == _pattern_sector()


def test_a_drive_formatted_at_offset_8_on_a_sed_keeps_it(tmp_path: Path) -> None:
    """Drive files made before the aligned offset: the header's offset is what counts."""
    mk = Secret(os.urandom(32))
    data = os.urandom(300 * 4096)
    file = FileMedia(drive_io.open_drive(str(tmp_path / "old.img"), create=True))
    file.resize(SIZE)
    sed = SelfEncryptingDrive.format(FileSectors(file))
    with Drive.create_on(SedMedia(sed, file), "old.img", data_offset=8) as drive:
        drive.enable_software_encryption(MK_ID, mk)
        drive.write(7, data)
        drive.flush()
    with Disk.open(tmp_path / "old.img") as disk:
        drive = disk.drive()
        assert drive.header.data_offset == 8
        drive.unlock(OneKey(mk))
        assert drive.read(7, 300) == data
        assert drive.read(0, 7) == bytes(7 * 4096)


def test_a_chunk_is_one_xts_unit_of_both_layers(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MiB write at a chunk boundary (a multiple of 256 drive sectors) is one data unit
    of the drive's cipher and one of the SED's: no starting iv is computed for it."""
    computed: list[tuple[int, int]] = []
    real = UnitTweaks._compute

    def counting(self: UnitTweaks, unit: int, first_block: int) -> bytes:
        computed.append((unit, first_block))
        return real(self, unit, first_block)

    monkeypatch.setattr(UnitTweaks, "_compute", counting)
    data = os.urandom(1 << 20)
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        drive = disk.drive()
        drive.enable_software_encryption(MK_ID, Secret(os.urandom(32)))
        computed.clear()
        drive.write(256, data)
        assert drive.read(256, 256) == data
        assert computed == []
        drive.write(256 + 64, data[: 64 * 4096])  # inside a unit: each layer computes one
        assert len(computed) == 2


def test_reads_mixing_written_and_never_written_sectors(tmp_path: Path) -> None:
    mk = Secret(os.urandom(32))
    with Disk.create(tmp_path / "d.img", SIZE) as disk:
        drive = disk.drive()
        drive.enable_software_encryption(MK_ID, mk)
        drive.write(3, _pattern_sector())
        drive.write(5, bytes(4096))  # written zeros: encrypted, read back as zeros
        expected = bytes(3 * 4096) + _pattern_sector() + bytes(4 * 4096)
        assert drive.read(0, 8) == expected
        assert drive.read(0, 300)[: 8 * 4096] == expected  # past the staging buffer
