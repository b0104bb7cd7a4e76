"""The emulated self-encrypting drive: locking, the AK, lock-out, rewrap, secure erase, and
what reaches the media."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE, BlockDevice
from sealbox.storage.drive import Drive
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.sed import SelfEncryptingDrive
from sealbox.storage.sed_errors import (
    SedAuthenticationFailed,
    SedError,
    SedLocked,
    SedLockedOut,
    SedStateError,
)

MEDIA_SECTORS = 64
PATTERN = b"sealbox-sed-known-plaintext-" * 146 + b"01234567"  # 4096 bytes
assert len(PATTERN) == SECTOR_SIZE


@pytest.fixture
def media_path(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def media(media_path: Path) -> Iterator[FileBlockDevice]:
    device = FileBlockDevice(media_path, MEDIA_SECTORS, create=True)
    yield device
    device.close()


@pytest.fixture
def ak() -> Secret:
    return Secret(os.urandom(32))


def reopen(media: BlockDevice, max_attempts: int = 5) -> SelfEncryptingDrive:
    """A power cycle: a new object over the same media, nothing kept in memory."""
    return SelfEncryptingDrive.open(media, max_attempts=max_attempts)


def raw(path: Path) -> bytes:
    return path.read_bytes()


# --- without locking ----------------------------------------------------------------------
def test_format_gives_an_unlocked_drive_without_locking(media: FileBlockDevice) -> None:
    sed = SelfEncryptingDrive.format(media)
    assert not sed.locked and not sed.locking_enabled
    assert sed.sector_count == MEDIA_SECTORS - 8
    assert sed.mek_generation == 1
    assert sed.read(0, 2) == bytes(2 * SECTOR_SIZE)  # never written: zeros, like a fresh disk


def test_round_trip_without_locking_survives_a_power_cycle(media: FileBlockDevice) -> None:
    sed = SelfEncryptingDrive.format(media)
    data = os.urandom(5 * SECTOR_SIZE)
    sed.write(3, data)
    sed.flush()
    assert sed.read(3, 5) == data
    again = reopen(media)
    assert not again.locked  # no AK needed: the MEK is wrapped under the public MSID
    assert again.read(3, 5) == data
    assert again.read(2, 1) == bytes(SECTOR_SIZE)
    again.unlock(Secret(b"anything-at-all-really"))  # a no-op without locking


def test_the_plaintext_never_reaches_the_media_even_without_locking(
    media: FileBlockDevice, media_path: Path, ak: Secret
) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.write(0, PATTERN * 4)
    sed.write(sed.sector_count - 1, PATTERN)
    sed.flush()
    assert PATTERN[:64] not in raw(media_path)
    sed.enable_locking(ak)
    sed.write(10, PATTERN)
    sed.flush()
    assert PATTERN[:64] not in raw(media_path)
    # sector 0 of the drive is media sector 8, its own tweak: the ciphertext sits there
    assert media.read(8, 1) != bytes(SECTOR_SIZE)


def test_equal_plaintext_in_two_places_gives_different_ciphertext(
    media: FileBlockDevice,
) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.write(0, PATTERN * 2)
    first, second = media.read(8, 1), media.read(9, 1)
    assert first != second  # the tweak is the media sector number


# --- locking ------------------------------------------------------------------------------
def test_round_trip_with_locking(media: FileBlockDevice, ak: Secret) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    assert sed.locking_enabled and not sed.locked  # stays unlocked until power-off
    data = os.urandom(3 * SECTOR_SIZE)
    sed.write(7, data)
    sed.flush()
    again = reopen(media)
    assert again.locked and again.locking_enabled
    again.unlock(ak)
    assert not again.locked
    assert again.read(7, 3) == data


def test_a_locked_drive_serves_no_io(media: FileBlockDevice, ak: Secret) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.write(0, PATTERN)
    sed.enable_locking(ak)
    sed.flush()
    locked = reopen(media)
    with pytest.raises(SedLocked) as read_error:
        locked.read(0, 1)
    with pytest.raises(SedLocked):
        locked.write(0, PATTERN)
    with pytest.raises(SedLocked):
        locked.flush()
    assert read_error.value.element_name == "xSedLocked"
    assert locked.sector_count == sed.sector_count  # geometry is not secret
    locked.unlock(ak)
    assert locked.read(0, 1) == PATTERN


def test_lock_forgets_the_mek(media: FileBlockDevice, ak: Secret) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    sed.lock()
    assert sed.locked
    with pytest.raises(SedLocked):
        sed.read(0, 1)
    sed.unlock(ak)
    assert sed.read(0, 1) == bytes(SECTOR_SIZE)


def test_new_aks_must_be_keys_not_passwords(media: FileBlockDevice) -> None:
    sed = SelfEncryptingDrive.format(media)
    with pytest.raises(SedStateError):
        sed.enable_locking(Secret(b"hunter2"))
    assert not sed.locking_enabled


def test_locking_twice_is_refused(media: FileBlockDevice, ak: Secret) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    with pytest.raises(SedStateError):
        sed.enable_locking(Secret(os.urandom(32)))


# --- wrong AKs and lock-out ---------------------------------------------------------------
def test_wrong_aks_are_counted_and_lock_out_even_the_right_one(
    media: FileBlockDevice, ak: Secret
) -> None:
    SelfEncryptingDrive.format(media).enable_locking(ak)
    sed = reopen(media)
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(SedAuthenticationFailed) as failed:
            sed.unlock(Secret(os.urandom(32)))
        assert sed.attempts_remaining == left
        assert f"{left} attempts left" in failed.value.message
    for _ in range(3):
        with pytest.raises(SedLockedOut) as out:
            sed.unlock(ak)  # the right AK, too late
        assert sed.locked
    assert out.value.element_name == "xSedLockedOut"
    with pytest.raises(SedLockedOut):
        sed.change_ak(ak, Secret(os.urandom(32)))
    with pytest.raises(SedLockedOut):
        sed.disable_locking(ak)
    # a power cycle clears the counter
    cycled = reopen(media)
    assert cycled.attempts_remaining == 5
    cycled.unlock(ak)
    assert not cycled.locked


@pytest.mark.parametrize("limit", [1, 3])
def test_the_attempt_limit_is_configurable(
    media: FileBlockDevice, ak: Secret, limit: int
) -> None:
    SelfEncryptingDrive.format(media).enable_locking(ak)
    sed = reopen(media, max_attempts=limit)
    for _ in range(limit):
        with pytest.raises(SedAuthenticationFailed):
            sed.unlock(Secret(os.urandom(32)))
    with pytest.raises(SedLockedOut):
        sed.unlock(ak)


def test_a_success_resets_the_counter(media: FileBlockDevice, ak: Secret) -> None:
    SelfEncryptingDrive.format(media).enable_locking(ak)
    sed = reopen(media)
    for _ in range(4):
        with pytest.raises(SedAuthenticationFailed):
            sed.unlock(Secret(os.urandom(32)))
    sed.unlock(ak)
    assert sed.attempts_remaining == 5


def test_max_attempts_must_be_positive(media: FileBlockDevice) -> None:
    SelfEncryptingDrive.format(media)
    with pytest.raises(SedStateError):
        reopen(media, max_attempts=0)


def test_wrong_ak_messages_hold_no_key_material(media: FileBlockDevice, ak: Secret) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    wrong = Secret(b"W" * 32)
    with pytest.raises(SedAuthenticationFailed) as failed:
        sed.change_ak(wrong, Secret(os.urandom(32)))
    text = str(failed.value) + repr(failed.value)
    assert "WWWW" not in text and ak.reveal().hex() not in text
    assert failed.value.__cause__ is None and failed.value.__context__ is None


# --- the AK check is constant-time --------------------------------------------------------
def test_the_ak_check_goes_through_compare_digest(
    media: FileBlockDevice, ak: Secret, monkeypatch: pytest.MonkeyPatch
) -> None:
    SelfEncryptingDrive.format(media).enable_locking(ak)
    sed = reopen(media)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)  # sed_keys looks it up at each call
    with pytest.raises(SedAuthenticationFailed):
        sed.unlock(Secret(os.urandom(32)))
    sed.unlock(ak)
    stored = sed.metadata.verifier
    # (the sector cipher also compares the MEK's halves with compare_digest: not counted)
    checks = [(a, b) for a, b in calls if b == stored]
    assert len(checks) == 2
    assert checks[0][0] != stored and checks[1][0] == stored


def test_the_verifier_path_has_no_early_exit_comparison() -> None:
    """Code review, pinned: the verifier is compared only with ``hmac.compare_digest`` and the
    MEK is unwrapped only after it matched (no ``==`` on secrets, no unwrap-as-check)."""
    import inspect

    from sealbox.storage import sed, sed_keys

    check = inspect.getsource(sed_keys.ak_matches)
    assert "hmac.compare_digest(" in check and "==" not in check
    auth = inspect.getsource(sed.SelfEncryptingDrive._authenticate)
    assert auth.index("ak_matches(") < auth.index("unwrap_mek(")
    assert "==" not in auth


# --- changing and removing the AK ---------------------------------------------------------
def test_change_ak_rewraps_the_mek(
    media: FileBlockDevice, media_path: Path, ak: Secret
) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    sed.write(5, PATTERN)
    sed.flush()
    before = sed.metadata
    new = Secret(os.urandom(32))
    sed.change_ak(ak, new)
    after = sed.metadata
    assert after.wrapped_mek != before.wrapped_mek and after.salt != before.salt
    assert after.mek_generation == before.mek_generation  # same MEK, rewrapped
    image = raw(media_path)
    assert before.wrapped_mek not in image and before.verifier not in image  # both copies
    cycled = reopen(media)
    with pytest.raises(SedAuthenticationFailed):
        cycled.unlock(ak)
    cycled.unlock(new)
    assert cycled.read(5, 1) == PATTERN


def test_change_ak_with_a_wrong_old_ak_changes_nothing(
    media: FileBlockDevice, ak: Secret
) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    before = sed.metadata
    with pytest.raises(SedAuthenticationFailed):
        sed.change_ak(Secret(os.urandom(32)), Secret(os.urandom(32)))
    assert sed.metadata == before
    assert sed.attempts_remaining == 4


def test_change_ak_keeps_a_locked_drive_locked(media: FileBlockDevice, ak: Secret) -> None:
    SelfEncryptingDrive.format(media).enable_locking(ak)
    sed = reopen(media)
    new = Secret(os.urandom(32))
    sed.change_ak(ak, new)
    assert sed.locked
    sed.unlock(new)
    assert not sed.locked


def test_disable_locking_needs_the_ak_and_keeps_the_data(
    media: FileBlockDevice, media_path: Path, ak: Secret
) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    sed.write(1, PATTERN)
    sed.flush()
    locked = reopen(media)
    with pytest.raises(SedAuthenticationFailed):
        locked.disable_locking(Secret(os.urandom(32)))
    wrapped_under_ak = locked.metadata.wrapped_mek
    locked.disable_locking(ak)
    assert not locked.locked and not locked.locking_enabled
    assert wrapped_under_ak not in raw(media_path)
    cycled = reopen(media)
    assert not cycled.locked
    assert cycled.read(1, 1) == PATTERN
    with pytest.raises(SedStateError):
        cycled.change_ak(ak, Secret(os.urandom(32)))  # no AK to change


def test_enable_locking_removes_the_msid_wrapped_mek_from_both_copies(
    media: FileBlockDevice, media_path: Path, ak: Secret
) -> None:
    sed = SelfEncryptingDrive.format(media)
    public = sed.metadata.wrapped_mek  # anyone can unwrap this one: it must not survive
    sed.enable_locking(ak)
    assert public not in raw(media_path)


# --- secure erase -------------------------------------------------------------------------
def test_secure_erase_makes_old_data_unreadable(
    media: FileBlockDevice, media_path: Path, ak: Secret
) -> None:
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(ak)
    sed.write(0, PATTERN * 8)
    sed.flush()
    old = sed.metadata
    ciphertext = media.read(8, 8)
    sed.secure_erase()
    assert not sed.locking_enabled and not sed.locked
    assert sed.mek_generation == old.mek_generation + 1
    image = raw(media_path)
    assert old.wrapped_mek not in image and old.verifier not in image and old.salt not in image
    assert media.read(8, 8) == ciphertext  # the media was not rewritten: a crypto erase
    after = sed.read(0, 8)
    assert after != PATTERN * 8
    for index in range(8):  # every sector is garbage now, none still holds its plaintext
        assert after[index * SECTOR_SIZE : (index + 1) * SECTOR_SIZE] != PATTERN
        assert PATTERN[:32] not in after
    cycled = reopen(media)  # after a power cycle too, and without any AK
    assert not cycled.locked and cycled.read(0, 8) == after
    with pytest.raises(SedStateError):
        cycled.change_ak(ak, Secret(os.urandom(32)))  # the old AK is gone with the MEK


def test_secure_erase_works_on_a_locked_out_drive(media: FileBlockDevice, ak: Secret) -> None:
    SelfEncryptingDrive.format(media).enable_locking(ak)
    sed = reopen(media, max_attempts=1)
    with pytest.raises(SedAuthenticationFailed):
        sed.unlock(Secret(os.urandom(32)))
    sed.secure_erase()  # like a PSID revert: destroying data needs no secret
    sed.write(0, PATTERN)
    assert sed.read(0, 1) == PATTERN
    assert sed.attempts_remaining == 1
    new = Secret(os.urandom(32))
    sed.enable_locking(new)  # the erased drive can be taken into service again
    sed.lock()
    sed.unlock(new)
    assert sed.read(0, 1) == PATTERN


# --- the BlockDevice surface --------------------------------------------------------------
def test_it_is_a_block_device(media: FileBlockDevice) -> None:
    device: BlockDevice = SelfEncryptingDrive.format(media)
    device.write(0, PATTERN)
    assert device.read(0, 1) == PATTERN


@pytest.mark.parametrize(("sector", "count"), [(-1, 1), (0, 0), (55, 2), (56, 1)])
def test_requests_outside_the_drive_are_refused(
    media: FileBlockDevice, sector: int, count: int
) -> None:
    sed = SelfEncryptingDrive.format(media)
    with pytest.raises(SedError):
        sed.read(sector, count)


def test_partial_sectors_are_refused(media: FileBlockDevice) -> None:
    sed = SelfEncryptingDrive.format(media)
    with pytest.raises(SedError):
        sed.write(0, b"x" * 100)


def test_media_too_small_is_refused(tmp_path: Path) -> None:
    tiny = FileBlockDevice(tmp_path / "tiny", 8, create=True)
    try:
        with pytest.raises(SedError):
            SelfEncryptingDrive.format(tiny)
    finally:
        tiny.close()


def test_media_io_errors_become_sed_errors(media: FileBlockDevice) -> None:
    from sealbox.storage.sed_errors import SedIOError

    sed = SelfEncryptingDrive.format(media)
    media.close()
    with pytest.raises(SedIOError) as failed:
        sed.flush()
    assert isinstance(failed.value.__cause__, OSError)


# --- two layers: software encryption (Drive) and the SED ----------------------------------
def test_both_layers_encrypt_independently(tmp_path: Path, ak: Secret) -> None:
    """The real software-encryption ``Drive`` as the SED's media: what reaches the file went
    through both ciphers. (The recommended production order is the reverse - the SED at the
    bottom - which needs ``Drive`` to accept a ``BlockDevice``; see docs/sed.md.)"""
    path = tmp_path / "drive"
    drive = Drive.create(path, 64 * SECTOR_SIZE + 8 * SECTOR_SIZE)
    try:
        drive.enable_software_encryption("mk-1", Secret(os.urandom(32)))
        sed = SelfEncryptingDrive.format(drive)
        sed.enable_locking(ak)
        sed.write(0, PATTERN * 3)
        sed.flush()
        assert PATTERN[:32] not in path.read_bytes()
        # Peel the software layer only: still SED ciphertext, not the plaintext.
        software_only = drive.read(8, 3)
        assert PATTERN[:32] not in software_only and software_only != bytes(3 * SECTOR_SIZE)
        # Both layers peeled: the plaintext.
        cycled = reopen(drive)
        assert cycled.locked
        cycled.unlock(ak)
        assert cycled.read(0, 3) == PATTERN * 3
    finally:
        drive.close()


# --- data units ---------------------------------------------------------------------------
def test_a_version_1_drive_keeps_its_4_kib_units_until_erased(
    media: FileBlockDevice, media_path: Path, ak: Secret
) -> None:
    """Drives formatted with 4 KiB data units (format version 1) read and write as before;
    a secure erase (a new MEK) moves them to 1 MiB units (version 2)."""
    sed = SelfEncryptingDrive.format(media, large_units=False)
    assert sed.metadata.xts_unit_sectors == 1
    sed.write(3, PATTERN * 2)
    sed.enable_locking(ak)
    assert raw(media_path)[8:10] == (1).to_bytes(2, "little")
    again = SelfEncryptingDrive.open(media)
    again.unlock(ak)
    assert again.read(3, 2) == PATTERN * 2
    again.secure_erase()
    assert again.metadata.xts_unit_sectors == 256
    again.write(3, PATTERN)
    assert SelfEncryptingDrive.open(media).read(3, 1) == PATTERN


def test_1_mib_units_give_the_same_data_back_at_any_alignment(media: FileBlockDevice) -> None:
    sed = SelfEncryptingDrive.format(media)
    assert sed.metadata.xts_unit_sectors == 256
    data = os.urandom(7 * SECTOR_SIZE)
    sed.write(5, data)  # media sectors 13-19: inside the first 1 MiB unit, unaligned
    assert sed.read(5, 7) == data
    assert sed.read(6, 2) == data[SECTOR_SIZE : 3 * SECTOR_SIZE]
    assert SelfEncryptingDrive.open(media).read(5, 7) == data
