"""The drive header format: a golden copy, tamper and version checks, A/B copy selection."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.drive_errors import DriveError, DriveFormatUnsupported, DriveHeaderCorrupt
from sealbox.storage.header import (
    DriveHeader,
    EncryptionMode,
    KeySlot,
    choose_current,
    copy_index,
    pack_header,
    parse_header,
)
from sealbox.storage.keywrap import unwrap_dek, wrap_dek

GOLDEN = Path(__file__).parent / "vectors" / "drive_header_v1.hex"
MK_A = Secret(bytes(range(32)))
MK_B = Secret(bytes(range(32, 64)))
DEK = Secret(bytes(range(64, 128)))


def golden_header() -> DriveHeader:
    """The fixed inputs the golden file was built from (docs/storage-format.md shows it)."""
    return DriveHeader(
        drive_uuid=uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"),
        sequence=5,
        data_offset=8,
        sector_count=2040,
        encryption=EncryptionMode.SOFTWARE,
        slots=(
            KeySlot(1, "9d1f5c2e-0b7a-4e43-8f0e-3c2a1b0d9e8f", wrap_dek(MK_A, DEK)),
            KeySlot(2, "kmip:42", wrap_dek(MK_B, DEK)),
        ),
    )


def golden_bytes() -> bytes:
    return bytes.fromhex("".join(GOLDEN.read_text().split()))


def test_the_format_has_not_changed_silently() -> None:
    # If this fails, the on-disk format changed: bump FORMAT_VERSION, keep a reader for
    # version 1, update docs/storage-format.md, and only then regenerate the golden file.
    assert pack_header(golden_header()) == golden_bytes()


def test_the_golden_header_parses_to_its_inputs() -> None:
    parsed = parse_header(golden_bytes())
    assert parsed == golden_header()
    for slot, master in zip(parsed.slots, (MK_A, MK_B), strict=True):
        assert slot is not None
        assert unwrap_dek(master, slot.wrapped_dek) == DEK


def test_documented_offsets_hold() -> None:
    raw = golden_bytes()
    assert raw[0:8] == b"SEALBOXD"
    assert int.from_bytes(raw[8:10], "little") == 1
    assert int.from_bytes(raw[12:16], "little") == 4096
    assert int.from_bytes(raw[16:24], "little") == 5
    assert raw[24:40] == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert raw[56] == 1
    assert raw[64] == 1 and raw[224] == 1  # both slots in use
    assert raw[232] == 2 and raw[240] == 7 and raw[241] == 72 and raw[248:255] == b"kmip:42"
    assert len(raw) == 4096


def test_every_tampered_byte_is_detected() -> None:
    raw = golden_bytes()
    for index in range(len(raw)):
        damaged = bytearray(raw)
        damaged[index] ^= 0x01
        with pytest.raises(DriveError):
            parse_header(bytes(damaged))


@pytest.mark.parametrize("size", [0, 4095, 4097])
def test_a_truncated_or_padded_header_is_refused(size: int) -> None:
    raw = (golden_bytes() + b"\0")[:size]
    with pytest.raises(DriveHeaderCorrupt):
        parse_header(raw)


def test_a_newer_version_is_refused_with_a_clear_error() -> None:
    raw = bytearray(golden_bytes())
    raw[8:10] = (3).to_bytes(2, "little")  # this sealbox reads versions 1 and 2
    with pytest.raises(DriveFormatUnsupported, match="version 3 is newer"):
        parse_header(bytes(raw))
    # ... even if the other copy is a valid older one: never fall back across versions.
    with pytest.raises(DriveFormatUnsupported):
        choose_current([bytes(raw), golden_bytes()])


def test_the_newest_intact_copy_wins() -> None:
    older = pack_header(golden_header())
    newer = pack_header(
        replace(golden_header(), sequence=6, slots=(None, golden_header().slots[1]))
    )
    assert choose_current([older, newer]).sequence == 6
    assert choose_current([newer, older]).sequence == 6
    torn = newer[:2048] + bytes(2048)  # half of the new copy reached the disk
    assert choose_current([older, torn]).sequence == 5


def test_no_intact_copy_is_corruption() -> None:
    with pytest.raises(DriveHeaderCorrupt, match="no intact copy"):
        choose_current([bytes(4096), b"\xff" * 4096])


def test_copies_alternate_with_the_sequence() -> None:
    assert {copy_index(n) for n in (5, 6)} == {0, 1}


@pytest.mark.parametrize(
    "change",
    [
        {"encryption": EncryptionMode.NONE},  # an unencrypted drive with key slots
        {"data_offset": 1},  # the data area would overlap the header
        {"sector_count": -1},
    ],
)
def test_inconsistent_headers_cannot_be_built(change: dict[str, object]) -> None:
    with pytest.raises(DriveHeaderCorrupt):
        replace(golden_header(), **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("generation", "key_id", "wrapped"),
    [(0, "k", bytes(72)), (1, "", bytes(72)), (1, "x" * 65, bytes(72)), (1, "k", bytes(71))],
)
def test_bad_key_slots_cannot_be_built(generation: int, key_id: str, wrapped: bytes) -> None:
    with pytest.raises(DriveHeaderCorrupt):
        KeySlot(generation, key_id, wrapped)


def test_two_slots_cannot_share_a_generation() -> None:
    slot = golden_header().slots[0]
    assert slot is not None
    with pytest.raises(DriveHeaderCorrupt):
        replace(golden_header(), slots=(slot, replace(slot, master_key_id="other")))


def test_version_2_says_1_mib_xts_units_and_round_trips() -> None:
    header = replace(golden_header(), xts_unit_sectors=256)
    raw = pack_header(header)
    assert int.from_bytes(raw[8:10], "little") == 2 and raw[57] == 8
    assert parse_header(raw) == header
    assert raw[:8] + raw[10:57] + raw[58:4064] == (
        golden_bytes()[:8] + golden_bytes()[10:57] + golden_bytes()[58:4064]
    )  # nothing else moves
    for index in range(len(raw)):
        damaged = bytearray(raw)
        damaged[index] ^= 0x01
        with pytest.raises(DriveError):
            parse_header(bytes(damaged))


def test_version_2_needs_software_encryption() -> None:
    with pytest.raises(DriveHeaderCorrupt, match="XTS data unit"):
        replace(golden_header(), encryption=EncryptionMode.NONE, slots=(None, None),
                xts_unit_sectors=256)
    with pytest.raises(DriveHeaderCorrupt, match="XTS data unit"):
        replace(golden_header(), xts_unit_sectors=16)
