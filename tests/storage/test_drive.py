"""A drive's life: format, open, the data area as a block device, plain and encrypted."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.blockdev import BlockDevice
from sealbox.storage.drive import Drive
from sealbox.storage.drive_errors import (
    DriveError,
    DriveHeaderCorrupt,
    DriveIOError,
    DriveLocked,
    DriveTruncated,
)
from sealbox.storage.header import EncryptionMode
from sealbox.storage.keysource import MemoryKeySource

SECTOR = 4096
SIZE = 4 * 1024 * 1024  # 1024 sectors, 1016 of them data
PATTERN = b"sealbox-known-plaintext-" * 170 + b"0123456789abcdef"  # 4096 bytes


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "drive0"


@pytest.fixture
def master() -> Secret:
    return Secret(os.urandom(32))


@pytest.fixture
def encrypted(path: Path, master: Secret) -> Iterator[Drive]:
    drive = Drive.create(path, SIZE)
    drive.enable_software_encryption("mk-1", master)
    yield drive
    drive.close()


def test_a_new_drive_is_sparse_and_reads_zeros(path: Path) -> None:
    with Drive.create(path, SIZE) as drive:
        assert drive.sector_count == SIZE // SECTOR - 8
        assert drive.encryption is EncryptionMode.NONE
        assert drive.read(0, 4) == bytes(4 * SECTOR)
    assert path.stat().st_size == SIZE
    assert path.stat().st_blocks * 512 < SIZE // 4  # only the header was written


def test_a_drive_reopens_with_the_same_identity(path: Path) -> None:
    with Drive.create(path, SIZE) as drive:
        identity = drive.uuid
        drive.write(7, PATTERN)
        drive.flush()
    with Drive.open(path) as drive:
        assert drive.uuid == identity
        assert drive.read(7, 1) == PATTERN


def test_a_drive_is_a_block_device(path: Path) -> None:
    with Drive.create(path, SIZE) as drive:
        device: BlockDevice = drive
        assert device.sector_count == drive.sector_count


def test_create_refuses_an_existing_file_and_bad_sizes(path: Path) -> None:
    path.write_bytes(b"precious")
    with pytest.raises(DriveIOError, match="already exists"):
        Drive.create(path, SIZE)
    assert path.read_bytes() == b"precious"
    for size in (SIZE + 1, 8 * SECTOR):
        with pytest.raises(DriveError):
            Drive.create(path.with_name(f"d{size}"), size)
        assert not path.with_name(f"d{size}").exists()  # nothing half-formatted left behind


def test_unencrypted_data_is_stored_as_is(path: Path) -> None:
    with Drive.create(path, SIZE) as drive:
        drive.write(0, PATTERN)
        drive.flush()
    assert PATTERN in path.read_bytes()


def test_encrypted_data_appears_nowhere_in_the_drive_file(
    encrypted: Drive, path: Path, master: Secret
) -> None:
    encrypted.write(0, PATTERN * 8)
    encrypted.write(500, PATTERN)
    encrypted.flush()
    image = path.read_bytes()
    assert b"sealbox-known-plaintext" not in image
    assert master.reveal() not in image
    assert encrypted.read(0, 8) == PATTERN * 8
    assert encrypted.read(500, 1) == PATTERN


def test_the_same_plaintext_differs_per_sector(encrypted: Drive, path: Path) -> None:
    encrypted.write(1, PATTERN * 2)
    encrypted.flush()
    image = path.read_bytes()
    start = 9 * SECTOR  # data area begins at sector 8
    assert image[start : start + SECTOR] != image[start + SECTOR : start + 2 * SECTOR]


def test_unwritten_sectors_read_as_zeros_but_written_zeros_are_encrypted(
    encrypted: Drive, path: Path
) -> None:
    encrypted.write(3, bytes(SECTOR))
    encrypted.write(4, PATTERN)
    encrypted.flush()
    assert encrypted.read(2, 4) == bytes(2 * SECTOR) + PATTERN + bytes(SECTOR)
    image = path.read_bytes()
    assert image[11 * SECTOR : 12 * SECTOR] != bytes(SECTOR)  # sector 3: zeros, encrypted
    assert image[10 * SECTOR : 11 * SECTOR] == bytes(SECTOR)  # sector 2: never written


def test_an_encrypted_drive_opens_locked(encrypted: Drive, path: Path, master: Secret) -> None:
    encrypted.write(9, PATTERN)
    encrypted.flush()
    with Drive.open(path) as drive:
        assert drive.locked
        with pytest.raises(DriveLocked):
            drive.read(9, 1)
        with pytest.raises(DriveLocked):
            drive.write(9, PATTERN)
        assert drive.unlock(MemoryKeySource({"mk-1": master})) == "mk-1"
        assert drive.read(9, 1) == PATTERN
        drive.lock()
        with pytest.raises(DriveLocked):
            drive.read(9, 1)


@pytest.mark.parametrize(("sector", "count"), [(-1, 1), (0, 0), (1015, 2), (1016, 1)])
def test_io_outside_the_data_area_is_refused(path: Path, sector: int, count: int) -> None:
    with Drive.create(path, SIZE) as drive:
        with pytest.raises(DriveError, match="outside"):
            drive.read(sector, count)
        with pytest.raises(DriveError):
            drive.write(sector, bytes(count * SECTOR))


def test_partial_sector_writes_are_refused(path: Path) -> None:
    with Drive.create(path, SIZE) as drive, pytest.raises(DriveError, match="whole"):
        drive.write(0, b"x" * 100)


def test_a_truncated_drive_is_detected(path: Path) -> None:
    Drive.create(path, SIZE).close()
    os.truncate(path, SIZE - SECTOR)
    with pytest.raises(DriveTruncated):
        Drive.open(path)
    os.truncate(path, SECTOR)
    with pytest.raises(DriveTruncated):
        Drive.open(path)


def test_a_drive_with_both_headers_damaged_is_refused(path: Path) -> None:
    Drive.create(path, SIZE).close()
    with path.open("r+b") as f:
        f.write(b"\xff" * (2 * SECTOR))
    with pytest.raises(DriveHeaderCorrupt):
        Drive.open(path)


def test_a_file_that_is_not_a_drive_is_refused(path: Path) -> None:
    path.write_bytes(os.urandom(SIZE))
    with pytest.raises(DriveHeaderCorrupt):
        Drive.open(path)


def test_concurrent_io_from_threads(encrypted: Drive) -> None:
    errors: list[int] = []

    def work(worker: int) -> None:
        for round_ in range(25):
            sector = worker * 100 + round_
            payload = bytes([worker + 1]) * SECTOR * 2
            encrypted.write(sector, payload)
            if encrypted.read(sector, 2) != payload:
                errors.append(sector)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_io_after_close_is_an_error(path: Path) -> None:
    drive = Drive.create(path, SIZE)
    drive.close()
    with pytest.raises(DriveIOError):
        drive.read(0, 1)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A real block device over a file, where the kernel allows it (root, loop module)."""
    backing = tmp_path / "loop-backing"
    with backing.open("wb") as f:
        f.truncate(SIZE)
    losetup = shutil.which("losetup")
    if losetup is None or os.geteuid() != 0:
        pytest.skip("needs root and losetup for a loop device")
    made = subprocess.run(
        [losetup, "--find", "--show", str(backing)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"no loop device here: {made.stderr.strip()}")
    device = made.stdout.strip()
    yield device
    subprocess.run([losetup, "--detach", device], check=True)


def test_a_block_device_works_without_st_size(loop_device: str, master: Secret) -> None:
    assert os.stat(loop_device).st_size == 0  # why the drive must seek to the end instead
    with Drive.create(loop_device) as drive:
        assert drive.sector_count == SIZE // SECTOR - 8
        drive.enable_software_encryption("mk-1", master)
        drive.write(drive.sector_count - 1, PATTERN)
        drive.flush()
    with Drive.open(loop_device) as drive:
        drive.unlock(MemoryKeySource({"mk-1": master}))
        assert drive.read(drive.sector_count - 1, 1) == PATTERN


def test_a_new_encrypted_drive_uses_1_mib_xts_units(
    encrypted: Drive, path: Path, master: Secret
) -> None:
    # Format 2 on disk: data-area sectors 256u .. 256u+255 form XTS data unit u.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from sealbox.storage.keywrap import unwrap_dek

    assert encrypted.header.version == 2 and encrypted.header.xts_unit_sectors == 256
    data = os.urandom(256 * SECTOR)
    encrypted.write(256, data[: 100 * SECTOR])  # a unit written in two runs
    encrypted.write(356, data[100 * SECTOR :])
    encrypted.flush()
    slot = encrypted.header.slots[0]
    assert slot is not None
    dek = unwrap_dek(master, slot.wrapped_dek).reveal()
    unit = Cipher(algorithms.AES(dek), modes.XTS((1).to_bytes(16, "little"))).encryptor()
    start = (8 + 256) * SECTOR
    assert path.read_bytes()[start : start + 256 * SECTOR] == unit.update(data)
    assert encrypted.read(256, 256) == data


def test_a_version_1_drive_with_4_kib_units_still_works(path: Path, master: Secret) -> None:
    # Drives written before format 2 keep one XTS data unit per sector, tweak = sector.
    import uuid

    from sealbox.storage.crypto import SectorCipher
    from sealbox.storage.header import DriveHeader, KeySlot, pack_header
    from sealbox.storage.keywrap import wrap_dek

    dek = Secret(os.urandom(64))
    header = DriveHeader(uuid.uuid4(), 1, 8, SIZE // SECTOR - 8, EncryptionMode.SOFTWARE,
                         (KeySlot(1, "mk-1", wrap_dek(master, dek)), None))
    old = SectorCipher(dek)  # the format 1 cipher: 4 KiB data units
    with path.open("wb") as f:
        f.truncate(SIZE)
        f.write(pack_header(header) + pack_header(header))
        f.seek((8 + 5) * SECTOR)
        f.write(old.encrypt(5, PATTERN * 3))
    with Drive.open(path) as drive:
        assert drive.header.version == 1
        drive.unlock(MemoryKeySource({"mk-1": master}))
        assert drive.read(4, 5) == bytes(SECTOR) + PATTERN * 3 + bytes(SECTOR)
        drive.write(9, PATTERN)
        assert drive.read(9, 1) == PATTERN
        drive.stage_rewrap("mk-2", Secret(os.urandom(32)))  # a rekey keeps version 1
        assert drive.header.version == 1
    assert old.decrypt(9, path.read_bytes()[17 * SECTOR : 18 * SECTOR]) == PATTERN
    with Drive.open(path) as drive:
        drive.unlock(MemoryKeySource({"mk-1": master}))
        drive.crypto_erase("mk-1", master)  # a new DEK moves it to version 2
        assert drive.header.version == 2
        assert drive.read(5, 1) != PATTERN
