"""The SED metadata format: layout, damage detection, versions, and crash safety (torn
writes simulated byte by byte, and a real ``kill -9``)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.sed import SelfEncryptingDrive
from sealbox.storage.sed_errors import (
    SedAuthenticationFailed,
    SedFormatUnsupported,
    SedMetadataCorrupt,
)
from sealbox.storage.sed_format import (
    Locking,
    SedMetadata,
    choose_current,
    copy_index,
    pack_metadata,
    parse_metadata,
)

MEDIA_SECTORS = 32
PATTERN = b"torn-metadata-" * 292 + b"sealbox!"  # 4096 bytes
assert len(PATTERN) == SECTOR_SIZE

META = SedMetadata(
    uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"), 5, 8, 2040, Locking.ON, 3,
    bytes(range(32)), bytes(range(32, 104)), bytes(range(104, 136)),
)


# --- layout -------------------------------------------------------------------------------
def test_documented_offsets_hold() -> None:
    raw = pack_metadata(META)
    assert len(raw) == SECTOR_SIZE
    assert raw[0:8] == b"SEALBSED"
    assert raw[8:10] == (1).to_bytes(2, "little")  # version
    assert raw[10:12] == bytes(2)
    assert raw[12:16] == (4096).to_bytes(4, "little")
    assert raw[16:24] == (5).to_bytes(8, "little")  # sequence
    assert raw[24:40] == META.media_id.bytes
    assert raw[40:48] == (8).to_bytes(8, "little")  # data offset
    assert raw[48:56] == (2040).to_bytes(8, "little")  # sector count
    assert raw[56] == 1 and raw[57:64] == bytes(7)  # locking on, reserved
    assert raw[64:72] == (3).to_bytes(8, "little")  # MEK generation
    assert raw[72:104] == META.salt
    assert raw[104:176] == META.wrapped_mek
    assert raw[176:208] == META.verifier
    assert raw[208:4064] == bytes(3856)
    assert raw[4064:] == hashlib.sha256(raw[:4064]).digest()
    assert parse_metadata(raw) == META


def test_version_2_is_the_1_mib_data_unit() -> None:
    v2 = replace(META, xts_unit_sectors=256)
    raw = pack_metadata(v2)
    assert raw[8:10] == (2).to_bytes(2, "little")
    assert raw[10:] == pack_metadata(META)[10:4064] + raw[4064:]  # nothing else differs
    assert parse_metadata(raw) == v2
    with pytest.raises(SedMetadataCorrupt):
        replace(META, xts_unit_sectors=8)


def test_every_tampered_byte_is_detected() -> None:
    raw = pack_metadata(META)
    for index in range(SECTOR_SIZE):
        damaged = bytearray(raw)
        damaged[index] ^= 0x01
        # (a flipped version byte that reads as a newer version is refused as such)
        with pytest.raises((SedMetadataCorrupt, SedFormatUnsupported)):
            parse_metadata(bytes(damaged))


@pytest.mark.parametrize("size", [0, 100, 4095, 4097])
def test_a_truncated_or_padded_copy_is_refused(size: int) -> None:
    with pytest.raises(SedMetadataCorrupt):
        parse_metadata((pack_metadata(META) * 2)[:size])


def test_a_newer_version_is_refused_even_beside_an_intact_older_copy() -> None:
    newer = bytearray(pack_metadata(META))
    newer[8:10] = (3).to_bytes(2, "little")
    newer[4064:] = hashlib.sha256(newer[:4064]).digest()
    with pytest.raises(SedFormatUnsupported):
        choose_current([bytes(newer), pack_metadata(replace(META, sequence=4))])


def test_the_newest_intact_copy_wins() -> None:
    older, newer = pack_metadata(replace(META, sequence=4)), pack_metadata(META)
    assert choose_current([newer, older]).sequence == 5
    torn = newer[:2000] + bytes(SECTOR_SIZE - 2000)
    assert choose_current([torn, older]).sequence == 4
    with pytest.raises(SedMetadataCorrupt):
        choose_current([torn, bytes(SECTOR_SIZE)])


@pytest.mark.parametrize(
    "change",
    [{"sector_count": 0}, {"data_offset": 1}, {"mek_generation": 0}, {"salt": b"x"},
     {"wrapped_mek": bytes(40)}, {"verifier": bytes(31)}, {"sequence": -1}],
)
def test_inconsistent_metadata_cannot_be_built(change: dict[str, object]) -> None:
    with pytest.raises(SedMetadataCorrupt):
        replace(META, **change)  # type: ignore[arg-type]


def test_copies_alternate_with_the_sequence() -> None:
    assert [copy_index(n) for n in range(1, 5)] == [1, 0, 1, 0]


def test_unformatted_media_is_refused(tmp_path: Path) -> None:
    media = FileBlockDevice(tmp_path / "blank", MEDIA_SECTORS, create=True)
    try:
        with pytest.raises(SedMetadataCorrupt):
            SelfEncryptingDrive.open(media)
    finally:
        media.close()


def test_a_data_area_beyond_the_media_is_refused(tmp_path: Path) -> None:
    big = FileBlockDevice(tmp_path / "m", MEDIA_SECTORS, create=True)
    SelfEncryptingDrive.format(big)
    big.close()
    small = FileBlockDevice(tmp_path / "m", MEDIA_SECTORS - 1)
    try:
        with pytest.raises(SedMetadataCorrupt):
            SelfEncryptingDrive.open(small)
    finally:
        small.close()


# --- torn writes, simulated ---------------------------------------------------------------
class PowerCut(Exception):
    pass


class TearingMedia:
    """A file device that, once armed, lets ``keep`` bytes of the n-th metadata write reach
    the media and then loses power (raises) - as a power cut mid-write would."""

    def __init__(self, inner: FileBlockDevice, tear_at: int, keep: int) -> None:
        self.inner, self.tear_at, self.keep = inner, tear_at, keep
        self.metadata_writes = 0

    @property
    def sector_count(self) -> int:
        return self.inner.sector_count

    def read(self, sector: int, count: int) -> bytes:
        return self.inner.read(sector, count)

    def write(self, sector: int, data: bytes) -> None:
        if sector < 2 and len(data) == SECTOR_SIZE:
            self.metadata_writes += 1
            if self.metadata_writes == self.tear_at:
                old = self.inner.read(sector, 1)
                torn = bytearray(data[: self.keep] + old[self.keep :])
                if torn == data:
                    # The lost tail held the new bytes already: with keep=4095 the last checksum
                    # byte matches once in 256 runs, and the "torn" copy is the whole new one.
                    # Flip a lost byte so that the write is torn for sure.
                    torn[self.keep] ^= 0x01
                self.inner.write(sector, bytes(torn))
                raise PowerCut
        self.inner.write(sector, data)

    def flush(self) -> None:
        self.inner.flush()


@pytest.mark.parametrize("keep", [0, 1, 16, 100, 2048, 4064, 4095])
@pytest.mark.parametrize("tear_at", [1, 2])
def test_a_torn_change_ak_leaves_the_old_or_the_new_state(
    tmp_path: Path, keep: int, tear_at: int
) -> None:
    old, new = Secret(os.urandom(32)), Secret(os.urandom(32))
    inner = FileBlockDevice(tmp_path / "media", MEDIA_SECTORS, create=True)
    try:
        sed = SelfEncryptingDrive.format(inner)
        sed.enable_locking(old)
        sed.write(4, PATTERN)
        sed.flush()
        tearing = SelfEncryptingDrive.open(TearingMedia(inner, tear_at, keep))
        with pytest.raises(PowerCut):
            tearing.change_ak(old, new)
        # Torn first write: the previous state. Torn second write: the first one already
        # holds the new state, fsynced. Either way exactly one AK opens the drive.
        expected, refused = (old, new) if tear_at == 1 else (new, old)
        cycled = SelfEncryptingDrive.open(inner)
        with pytest.raises(SedAuthenticationFailed):
            cycled.unlock(refused)
        cycled.unlock(expected)
        assert cycled.read(4, 1) == PATTERN
        # open() rewrote the lagging copy: both copies are intact and agree again
        copies = [parse_metadata(inner.read(i, 1)) for i in (0, 1)]
        assert {replace(c, sequence=0) for c in copies} == {replace(copies[0], sequence=0)}
    finally:
        inner.close()


def test_a_crash_between_the_two_writes_of_enable_locking_is_healed_at_open(
    tmp_path: Path,
) -> None:
    """The copy left behind would hold the MEK wrapped under the public MSID: anyone could
    read the data. The next power-on overwrites it."""
    ak = Secret(os.urandom(32))
    inner = FileBlockDevice(tmp_path / "media", MEDIA_SECTORS, create=True)
    try:
        public = SelfEncryptingDrive.format(inner).metadata.wrapped_mek
        tearing = SelfEncryptingDrive.open(TearingMedia(inner, 2, 0))
        with pytest.raises(PowerCut):
            tearing.enable_locking(ak)
        assert public in inner.read(0, 2)  # the stale copy, before healing
        cycled = SelfEncryptingDrive.open(inner)
        assert cycled.locked
        assert public not in inner.read(0, 2)
    finally:
        inner.close()


# --- kill -9 ------------------------------------------------------------------------------
CHILD = r"""
import sys
from sealbox.secrets import Secret
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.sed import SelfEncryptingDrive

keys = [Secret(bytes([65 + i]) * 32) for i in range(2)]
sed = SelfEncryptingDrive.open(FileBlockDevice(sys.argv[1], int(sys.argv[2])))
sed.unlock(keys[0])
current = 0
print("ready", flush=True)
while True:
    sed.change_ak(keys[current], keys[1 - current])
    current = 1 - current
    print(current, flush=True)
"""


def test_kill_9_during_ak_changes_leaves_a_drive_one_of_two_aks_opens(tmp_path: Path) -> None:
    keys = [Secret(bytes([65 + i]) * 32) for i in range(2)]
    path = tmp_path / "media"
    media = FileBlockDevice(path, MEDIA_SECTORS, create=True)
    sed = SelfEncryptingDrive.format(media)
    sed.enable_locking(keys[0])
    sed.write(2, PATTERN)
    sed.flush()
    media.close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for steps in (1, 7, 40):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(MEDIA_SECTORS)],
                                 stdout=subprocess.PIPE, env=env, text=True)
        assert child.stdout is not None
        try:
            lines = [child.stdout.readline() for _ in range(steps)]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert all(lines), "the child died on its own"
        last = 0 if lines[-1].strip() == "ready" else int(lines[-1])
        media = FileBlockDevice(path, MEDIA_SECTORS)
        try:
            cycled = SelfEncryptingDrive.open(media)
            opened_with = last
            try:  # the AK last reported, else the one the change in flight installed
                cycled.unlock(keys[last])
            except SedAuthenticationFailed:
                opened_with = 1 - last
                cycled.unlock(keys[opened_with])
            assert cycled.read(2, 1) == PATTERN
            if opened_with == 1:  # leave the drive under keys[0] for the next child
                cycled.change_ak(keys[1], keys[0])
        finally:
            media.close()
