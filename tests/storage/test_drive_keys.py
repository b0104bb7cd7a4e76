"""Key slots (DESIGN.md "Rekey"): unlock, stage, retire, crypto-erase, and torn writes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage import drive_io
from sealbox.storage.drive import Drive
from sealbox.storage.drive_errors import (
    DriveIOError,
    DriveKeySlotError,
    DriveKeyUnavailable,
    DriveLocked,
)
from sealbox.storage.keysource import MemoryKeySource

SECTOR = 4096
PATTERN = os.urandom(SECTOR)


class Keys:
    """The cluster's keys: a master-key id to key map, handed to drives as a key source."""

    def __init__(self) -> None:
        self.source = MemoryKeySource()
        self.keys: dict[str, Secret] = {}

    def new(self, mk_id: str) -> Secret:
        key = Secret(os.urandom(32))
        self.keys[mk_id] = key
        self.source.add(mk_id, key)
        return key

    def destroy(self, mk_id: str) -> None:
        self.source.remove(mk_id)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "drive"


@pytest.fixture
def drive(path: Path, keys: Keys) -> Iterator[Drive]:
    drive = Drive.create(path, 1 << 20)
    drive.enable_software_encryption("mk-old", keys.new("mk-old"))
    drive.write(5, PATTERN)
    drive.flush()
    yield drive
    drive.close()


def reopen(path: Path, keys: Keys) -> tuple[Drive, str]:
    drive = Drive.open(path)
    used = drive.unlock(keys.source)
    assert drive.read(5, 1) == PATTERN
    return drive, used


def slots(drive: Drive) -> list[tuple[int, str] | None]:
    return [None if s is None else (s.generation, s.master_key_id) for s in drive.header.slots]


def test_enabling_encryption_writes_slot_zero_generation_one(drive: Drive) -> None:
    assert slots(drive) == [(1, "mk-old"), None]
    with pytest.raises(DriveKeySlotError, match="already"):
        drive.enable_software_encryption("mk-x", Secret(os.urandom(32)))


def test_a_full_rekey_in_design_order(drive: Drive, path: Path, keys: Keys) -> None:
    drive.stage_rewrap("mk-new", keys.new("mk-new"))  # step 3
    assert slots(drive) == [(1, "mk-old"), (2, "mk-new")]
    keys.destroy("mk-old")  # step 5: decommission the old key ...
    drive.retire_slot("mk-old")  # ... then clear its slot
    assert slots(drive) == [None, (2, "mk-new")]
    drive.close()
    reopened, used = reopen(path, keys)
    assert used == "mk-new"
    reopened.close()
    assert keys.keys["mk-old"].reveal() not in path.read_bytes()


def test_the_newest_slot_is_preferred(drive: Drive, path: Path, keys: Keys) -> None:
    drive.stage_rewrap("mk-new", keys.new("mk-new"))
    drive.close()
    reopened, used = reopen(path, keys)
    assert used == "mk-new"
    reopened.close()


def test_a_crash_before_the_commit_still_unlocks_with_the_old_key(
    drive: Drive, path: Path, keys: Keys
) -> None:
    drive.stage_rewrap("mk-new", keys.new("mk-new"))
    drive.close()
    keys.destroy("mk-new")  # rolled back: the orphaned new key was destroyed
    reopened, used = reopen(path, keys)
    assert used == "mk-old"
    reopened.retire_slot("mk-new")  # the rollback clears the orphaned slot
    assert slots(reopened) == [(1, "mk-old"), None]
    reopened.close()


def test_a_wrong_key_under_the_right_name_falls_back(drive: Drive, path: Path, keys: Keys) -> None:
    drive.stage_rewrap("mk-new", keys.new("mk-new"))
    drive.close()
    keys.source.add("mk-new", Secret(os.urandom(32)))
    reopened, used = reopen(path, keys)
    assert used == "mk-old"
    reopened.close()


def test_no_usable_key_leaves_the_drive_locked(drive: Drive, path: Path, keys: Keys) -> None:
    drive.close()
    keys.destroy("mk-old")
    with Drive.open(path) as reopened:
        with pytest.raises(DriveKeyUnavailable, match="mk-old"):
            reopened.unlock(keys.source)
        assert reopened.locked


def test_the_last_slot_cannot_be_retired(drive: Drive) -> None:
    with pytest.raises(DriveKeySlotError, match="only key slot"):
        drive.retire_slot("mk-old")
    drive.retire_slot("mk-unknown")  # nothing to do: a rolled-forward retry is harmless
    assert slots(drive) == [(1, "mk-old"), None]


def test_staging_twice_is_idempotent(drive: Drive, keys: Keys) -> None:
    key = keys.new("mk-new")
    drive.stage_rewrap("mk-new", key)
    drive.stage_rewrap("mk-new", key)
    assert slots(drive) == [(1, "mk-old"), (2, "mk-new")]


def test_staging_never_overwrites_the_slot_in_use(drive: Drive, path: Path, keys: Keys) -> None:
    drive.stage_rewrap("mk-b", keys.new("mk-b"))  # a rekey that never committed ...
    drive.stage_rewrap("mk-c", keys.new("mk-c"))  # ... and the next one
    assert slots(drive) == [(1, "mk-old"), (3, "mk-c")]
    assert drive.unlocked_with == "mk-old"
    drive.close()
    reopened, used = reopen(path, keys)
    assert used == "mk-c"
    reopened.close()


def test_rekey_needs_an_unlocked_drive(drive: Drive, keys: Keys) -> None:
    drive.lock()
    with pytest.raises(DriveLocked):
        drive.stage_rewrap("mk-new", keys.new("mk-new"))


def test_two_rekeys_in_a_row(drive: Drive, path: Path, keys: Keys) -> None:
    for old, new in (("mk-old", "mk-2"), ("mk-2", "mk-3")):
        drive.stage_rewrap(new, keys.new(new))
        keys.destroy(old)
        drive.retire_slot(old)
    assert {s[1] for s in slots(drive) if s} == {"mk-3"}
    drive.close()
    reopened, _ = reopen(path, keys)
    reopened.close()


def test_crypto_erase_makes_old_data_unreadable(drive: Drive, path: Path, keys: Keys) -> None:
    before = path.read_bytes()
    old_slot = drive.header.slots[0]
    assert old_slot is not None
    drive.crypto_erase("mk-old", keys.keys["mk-old"])
    assert drive.read(5, 1) != PATTERN
    image = path.read_bytes()
    assert old_slot.wrapped_dek in before
    assert old_slot.wrapped_dek not in image  # gone from both header copies
    drive.close()
    with Drive.open(path) as reopened:
        reopened.unlock(keys.source)
        assert reopened.read(5, 1) != PATTERN
        reopened.write(5, PATTERN)
        assert reopened.read(5, 1) == PATTERN


def test_an_unencrypted_drive_cannot_be_crypto_erased(path: Path, keys: Keys) -> None:
    with Drive.create(path, 1 << 20) as plain, pytest.raises(DriveKeySlotError):
        plain.crypto_erase("mk", keys.new("mk"))


def test_a_torn_header_write_leaves_the_previous_state(
    drive: Drive, path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = drive_io.write_all

    def torn(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        real_write(fd, bytes(data)[:1000], offset)  # power lost mid-sector
        raise DriveIOError("simulated power loss")

    monkeypatch.setattr(drive_io, "write_all", torn)
    with pytest.raises(DriveIOError):
        drive.stage_rewrap("mk-new", keys.new("mk-new"))
    monkeypatch.setattr(drive_io, "write_all", real_write)
    drive.close()
    reopened, used = reopen(path, keys)
    assert used == "mk-old"
    assert slots(reopened) == [(1, "mk-old"), None]
    reopened.stage_rewrap("mk-new", keys.keys["mk-new"])  # and the drive carries on
    assert slots(reopened) == [(1, "mk-old"), (2, "mk-new")]
    reopened.close()
