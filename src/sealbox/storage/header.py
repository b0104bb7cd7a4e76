"""The on-disk drive header: its fields, and packing/parsing one 4096-byte header copy.

The byte-by-byte layout is documented in ``docs/storage-format.md``; the golden test in
``tests/storage/test_drive_header.py`` breaks if it changes without a new format version.

Threat model: the header holds nothing secret. The DEK appears only RFC 5649-wrapped by a
master key that is never on the drive; master-key identifiers are names, not keys. The
checksum (SHA-256 over the whole sector) detects damage, not forgery: whoever can write the
drive can already destroy its data, and a forged header cannot yield the DEK without the MK.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass, field
from typing import Final

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.drive_errors import DriveFormatUnsupported, DriveHeaderCorrupt
from sealbox.storage.keywrap import WRAPPED_DEK_SIZE

MAGIC: Final = b"SEALBOXD"
# Version 1: XTS data unit = one 4 KiB sector. Version 2 (same layout): byte 57 gives the data
# unit as log2 of sectors, 8 = 1 MiB (see crypto.py for why); only software-encrypted drives
# use it. A drive keeps the version it has until it gets a new DEK (encryption enabled or
# crypto-erase), which is when it moves to version 2. Both versions are read and written.
FORMAT_VERSION: Final = 2
LARGE_XTS_UNIT_SECTORS: Final = 256
_XTS_UNIT_LOG2: Final = {1: 0, LARGE_XTS_UNIT_SECTORS: 8}
HEADER_COPIES: Final = 2  # sectors 0 and 1: copy A and copy B
DATA_OFFSET_SECTORS: Final = 8  # sectors 2..7 are reserved for later format versions
KEY_ID_MAX: Final = 64
SLOT_COUNT: Final = 2

_FIXED = struct.Struct("<8sHHIQ16sQQBB6x")  # 64 bytes
_SLOT = struct.Struct("<B7xQBB6x64s72s")  # 160 bytes
_SLOTS_AT: Final = _FIXED.size
_CHECKSUM_AT: Final = SECTOR_SIZE - 32
_SLOT_IN_USE: Final = 1
_RESERVED = slice(_SLOTS_AT + SLOT_COUNT * _SLOT.size, _CHECKSUM_AT)


class EncryptionMode(enum.IntEnum):
    NONE = 0
    SOFTWARE = 1  # AES-256-XTS with a DEK wrapped in the key slots


@dataclass(frozen=True)
class KeySlot:
    """One wrapped copy of the DEK: which master key wraps it, and how recent it is."""

    generation: int
    master_key_id: str
    wrapped_dek: bytes = field(repr=False)  # not secret, but noise in logs

    def __post_init__(self) -> None:
        encoded = self.master_key_id.encode("utf-8")
        if not 0 < len(encoded) <= KEY_ID_MAX or b"\x00" in encoded:
            raise DriveHeaderCorrupt("a master-key identifier must be 1 to 64 bytes, no NUL")
        if len(self.wrapped_dek) != WRAPPED_DEK_SIZE:
            raise DriveHeaderCorrupt("a wrapped DEK must be 72 bytes")
        if not 0 < self.generation < 1 << 64:
            raise DriveHeaderCorrupt("a key slot generation must be positive")


Slots = tuple[KeySlot | None, KeySlot | None]


@dataclass(frozen=True)
class DriveHeader:
    """Everything the header says. ``sequence`` orders the two on-disk copies."""

    drive_uuid: uuid.UUID
    sequence: int
    data_offset: int  # in sectors, from the start of the drive
    sector_count: int  # sectors in the data area
    encryption: EncryptionMode
    slots: Slots = (None, None)
    xts_unit_sectors: int = 1  # sectors per XTS data unit: 1 (version 1) or 256 (version 2)

    @property
    def version(self) -> int:
        return 1 if self.xts_unit_sectors == 1 else 2

    def __post_init__(self) -> None:
        if self.data_offset < HEADER_COPIES or self.sector_count < 0 or self.sequence < 0:
            raise DriveHeaderCorrupt("the drive header has impossible geometry")
        if self.xts_unit_sectors not in _XTS_UNIT_LOG2 or (
            self.xts_unit_sectors != 1 and self.encryption is not EncryptionMode.SOFTWARE
        ):
            raise DriveHeaderCorrupt("the drive header has an invalid XTS data unit")
        in_use = [slot for slot in self.slots if slot is not None]
        if self.encryption is EncryptionMode.NONE and in_use:
            raise DriveHeaderCorrupt("an unencrypted drive cannot have key slots")
        if len(in_use) == 2 and in_use[0].generation == in_use[1].generation:
            raise DriveHeaderCorrupt("two key slots cannot share a generation")


def _pack_slot(slot: KeySlot | None) -> bytes:
    if slot is None:
        return bytes(_SLOT.size)  # an empty slot is all zeros: nothing of the old key remains
    key_id = slot.master_key_id.encode("utf-8")
    return _SLOT.pack(
        _SLOT_IN_USE, slot.generation, len(key_id), len(slot.wrapped_dek), key_id, slot.wrapped_dek
    )


def pack_header(header: DriveHeader) -> bytes:
    """One header copy: exactly one sector, its last 32 bytes the SHA-256 of the rest."""
    fixed = _FIXED.pack(
        MAGIC,
        header.version,
        0,
        SECTOR_SIZE,
        header.sequence,
        header.drive_uuid.bytes,
        header.data_offset,
        header.sector_count,
        int(header.encryption),
        _XTS_UNIT_LOG2[header.xts_unit_sectors],
    )
    body = fixed + b"".join(_pack_slot(slot) for slot in header.slots)
    body += bytes(_CHECKSUM_AT - len(body))
    return body + hashlib.sha256(body).digest()


def _parse_slot(raw: bytes) -> KeySlot | None:
    if raw == bytes(_SLOT.size):
        return None
    state, generation, id_len, wrapped_len, key_id, wrapped = _SLOT.unpack(raw)
    if state != _SLOT_IN_USE or wrapped_len != WRAPPED_DEK_SIZE or id_len > KEY_ID_MAX:
        raise DriveHeaderCorrupt("a key slot of the drive header is damaged")
    if key_id[id_len:] != bytes(KEY_ID_MAX - id_len):
        raise DriveHeaderCorrupt("a key slot of the drive header is damaged")
    try:
        name = key_id[:id_len].decode("utf-8")
    except UnicodeDecodeError:
        raise DriveHeaderCorrupt("a key slot of the drive header is damaged") from None
    return KeySlot(generation, name, wrapped)


def check_version(raw: bytes) -> None:
    """Refuse a copy written by a newer format, even if other fields look damaged: an older
    sealbox must never fall back to a stale copy of a drive a newer one has upgraded."""
    if len(raw) >= _FIXED.size and raw[:8] == MAGIC:
        version = int.from_bytes(raw[8:10], "little")
        if version > FORMAT_VERSION:
            raise DriveFormatUnsupported(
                f"drive format version {version} is newer than this sealbox supports "
                f"(version {FORMAT_VERSION})"
            )


def parse_header(raw: bytes) -> DriveHeader:
    """Parse one header copy; raises :class:`DriveHeaderCorrupt` or
    :class:`DriveFormatUnsupported`."""
    if len(raw) != SECTOR_SIZE or raw[:8] != MAGIC:
        raise DriveHeaderCorrupt("no sealbox drive header (bad magic or size)")
    check_version(raw)
    expected = hashlib.sha256(raw[:_CHECKSUM_AT]).digest()
    if not hmac.compare_digest(expected, raw[_CHECKSUM_AT:]):
        raise DriveHeaderCorrupt("the drive header checksum does not match")
    _magic, version, reserved, sector_size, sequence, drive_id, offset, count, mode, unit = (
        _FIXED.unpack_from(raw)
    )
    if version not in (1, 2) or reserved or sector_size != SECTOR_SIZE:
        raise DriveHeaderCorrupt("the drive header has invalid fixed fields")
    if mode not in {int(m) for m in EncryptionMode} or raw[_RESERVED].strip(b"\0"):
        raise DriveHeaderCorrupt("the drive header has invalid fields")
    # Version 1 has a reserved zero byte here; version 2 must say 1 MiB, on an encrypted drive.
    expected_unit = 0 if version == 1 else _XTS_UNIT_LOG2[LARGE_XTS_UNIT_SECTORS]
    if unit != expected_unit or (version == 2 and mode != EncryptionMode.SOFTWARE):
        raise DriveHeaderCorrupt("the drive header has an invalid XTS data unit")
    slots = tuple(
        _parse_slot(raw[_SLOTS_AT + i * _SLOT.size : _SLOTS_AT + (i + 1) * _SLOT.size])
        for i in range(SLOT_COUNT)
    )
    return DriveHeader(
        uuid.UUID(bytes=drive_id),
        sequence,
        offset,
        count,
        EncryptionMode(mode),
        (slots[0], slots[1]),
        1 << unit,
    )


def choose_current(copies: list[bytes]) -> DriveHeader:
    """The intact copy with the highest sequence number. A torn or damaged copy is skipped:
    that is what makes a header write crash-safe (the other copy is the previous state)."""
    for raw in copies:
        check_version(raw)
    valid: list[DriveHeader] = []
    for raw in copies:
        try:
            valid.append(parse_header(raw))
        except DriveHeaderCorrupt:
            continue
    if not valid:
        raise DriveHeaderCorrupt("no intact copy of the drive header")
    return max(valid, key=lambda header: header.sequence)


def copy_index(sequence: int) -> int:
    """Which on-disk copy a header with this sequence number is written to (alternating)."""
    return sequence % HEADER_COPIES
