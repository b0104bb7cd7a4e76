"""The self-encrypting drive's on-media metadata: one 4096-byte copy, packed and parsed.

Byte-by-byte layout in ``docs/sed.md``. Sectors 0 and 1 of the media hold copies A and B,
sectors 2-7 are reserved (zero), the drive's user sectors start at media sector 8.

Threat model: nothing here is secret. The MEK appears only RFC 5649-wrapped by a KEK derived
from the AK (or, with locking disabled, from the public MSID); the salt and the AK verifier
are useless without the AK, which is a high-entropy key (never a password: HKDF does not slow
down guessing). The SHA-256 checksum detects damage (torn writes, bit rot), not forgery;
whoever can write the media can destroy the data anyway, and cannot forge an unlock.
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
from sealbox.storage.keywrap import WRAPPED_DEK_SIZE
from sealbox.storage.sed_errors import SedFormatUnsupported, SedMetadataCorrupt

MAGIC: Final = b"SEALBSED"
FORMAT_VERSION: Final = 2
# Sectors per XTS data unit: version 1 encrypts each 4 KiB sector as its own unit, version 2
# each 1 MiB of the media (256 sectors), about four times faster (docs/sed.md, "Data").
UNIT_SECTORS_BY_VERSION: Final = {1: 1, 2: 256}
LARGE_UNIT_SECTORS: Final = 256
METADATA_COPIES: Final = 2  # media sectors 0 and 1
DATA_OFFSET_SECTORS: Final = 8  # media sectors 2..7 reserved for later versions
SALT_SIZE: Final = 32
VERIFIER_SIZE: Final = 32

# magic, version, reserved, sector size, sequence, media id, data offset, sector count,
# locking, 7 reserved, MEK generation, salt, wrapped MEK, AK verifier: 208 bytes.
_FIXED = struct.Struct(f"<8sHHIQ16sQQB7xQ{SALT_SIZE}s{WRAPPED_DEK_SIZE}s{VERIFIER_SIZE}s")
_CHECKSUM_AT: Final = SECTOR_SIZE - 32
_RESERVED = slice(_FIXED.size, _CHECKSUM_AT)


class Locking(enum.IntEnum):
    """Whether the MEK is wrapped under the public MSID (OFF) or under the AK (ON)."""

    OFF = 0
    ON = 1


@dataclass(frozen=True)
class SedMetadata:
    """Everything one metadata copy says. ``sequence`` orders the two copies."""

    media_id: uuid.UUID
    sequence: int
    data_offset: int  # first user sector on the media
    sector_count: int  # user sectors
    locking: Locking
    mek_generation: int  # 1 at format, +1 at every secure erase
    salt: bytes = field(repr=False)  # HKDF salt of the current wrap (new at every rewrap)
    wrapped_mek: bytes = field(repr=False)  # RFC 5649 of the 64-byte MEK under the KEK
    verifier: bytes = field(repr=False)  # HMAC-SHA256 proving knowledge of the AK (or MSID)
    xts_unit_sectors: int = 1  # 1 in format version 1, 256 in version 2

    def __post_init__(self) -> None:
        if self.data_offset < METADATA_COPIES or self.sector_count <= 0 or self.sequence < 0:
            raise SedMetadataCorrupt("the drive metadata has impossible geometry")
        if self.xts_unit_sectors not in UNIT_SECTORS_BY_VERSION.values():
            raise SedMetadataCorrupt("the drive metadata has an invalid data unit")
        if not 0 < self.mek_generation < 1 << 64:
            raise SedMetadataCorrupt("the drive metadata has an invalid MEK generation")
        sizes = (len(self.salt), len(self.wrapped_mek), len(self.verifier))
        if sizes != (SALT_SIZE, WRAPPED_DEK_SIZE, VERIFIER_SIZE):
            raise SedMetadataCorrupt("the drive metadata has a malformed key record")


def pack_metadata(meta: SedMetadata) -> bytes:
    """One copy: exactly one sector, its last 32 bytes the SHA-256 of the rest."""
    body = _FIXED.pack(
        MAGIC,
        next(v for v, u in UNIT_SECTORS_BY_VERSION.items() if u == meta.xts_unit_sectors),
        0,
        SECTOR_SIZE,
        meta.sequence,
        meta.media_id.bytes,
        meta.data_offset,
        meta.sector_count,
        int(meta.locking),
        meta.mek_generation,
        meta.salt,
        meta.wrapped_mek,
        meta.verifier,
    )
    body += bytes(_CHECKSUM_AT - len(body))
    return body + hashlib.sha256(body).digest()


def check_version(raw: bytes) -> None:
    """Refuse a copy of a newer format even if the rest looks damaged: an older sealbox must
    never fall back to a stale copy of a drive that a newer one has upgraded."""
    if len(raw) >= 10 and raw[:8] == MAGIC:
        version = int.from_bytes(raw[8:10], "little")
        if version > FORMAT_VERSION:
            raise SedFormatUnsupported(
                f"self-encrypting drive format version {version} is newer than this sealbox "
                f"supports (version {FORMAT_VERSION})"
            )


def parse_metadata(raw: bytes) -> SedMetadata:
    """Parse one copy; raises :class:`SedMetadataCorrupt` or :class:`SedFormatUnsupported`."""
    if len(raw) != SECTOR_SIZE or raw[:8] != MAGIC:
        raise SedMetadataCorrupt("no self-encrypting drive metadata (bad magic or size)")
    check_version(raw)
    expected = hashlib.sha256(raw[:_CHECKSUM_AT]).digest()
    if not hmac.compare_digest(expected, raw[_CHECKSUM_AT:]):
        raise SedMetadataCorrupt("the drive metadata checksum does not match")
    (_magic, version, reserved, sector_size, sequence, media_id, offset, count, locking,
     generation, salt, wrapped, verifier) = _FIXED.unpack_from(raw)
    if version not in UNIT_SECTORS_BY_VERSION or reserved or sector_size != SECTOR_SIZE:
        raise SedMetadataCorrupt("the drive metadata has invalid fixed fields")
    if locking not in {int(v) for v in Locking} or raw[_RESERVED].strip(b"\0"):
        raise SedMetadataCorrupt("the drive metadata has invalid fields")
    # The 7 reserved bytes after ``locking`` are skipped by the struct format: check them too.
    if raw[57:64].strip(b"\0"):
        raise SedMetadataCorrupt("the drive metadata has invalid fields")
    return SedMetadata(uuid.UUID(bytes=media_id), sequence, offset, count, Locking(locking),
                       generation, salt, wrapped, verifier, UNIT_SECTORS_BY_VERSION[version])


def choose_current(copies: list[bytes]) -> SedMetadata:
    """The intact copy with the higher sequence. A torn or damaged copy is skipped: that is
    what makes a metadata write crash-safe (the other copy holds the previous state)."""
    for raw in copies:
        check_version(raw)
    valid: list[SedMetadata] = []
    for raw in copies:
        try:
            valid.append(parse_metadata(raw))
        except SedMetadataCorrupt:
            continue
    if not valid:
        raise SedMetadataCorrupt("no intact copy of the self-encrypting drive metadata")
    return max(valid, key=lambda meta: meta.sequence)


def copy_index(sequence: int) -> int:
    """The media sector (0 or 1) that a copy with this sequence is written to."""
    return sequence % METADATA_COPIES
