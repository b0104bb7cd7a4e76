"""Volume metadata as a sequence of operations, and the state they build.

The same operation encoding serves the record log and the snapshot: a snapshot is just the
shortest list of operations that rebuilds the current state from nothing, so there is one codec
to test and one replay function. Byte layout (little-endian) is in ``docs/volumes.md``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

Loc = tuple[int, int]
"""Where one copy of a chunk lives: (block drive id, slot on that drive)."""


class Role(IntEnum):
    SLICE = 1
    BLOCK = 2


@dataclass(frozen=True)
class CreateVolume:
    volume_id: int
    name: str
    size: int


@dataclass(frozen=True)
class ResizeVolume:
    volume_id: int
    size: int


@dataclass(frozen=True)
class DeleteVolume:
    volume_id: int


@dataclass(frozen=True)
class MapChunk:
    volume_id: int
    chunk: int
    locs: tuple[Loc, ...]


@dataclass(frozen=True)
class UnmapChunk:
    volume_id: int
    chunk: int


@dataclass(frozen=True)
class AddDrive:
    drive_id: int
    node_id: int
    role: Role
    sector_count: int


@dataclass(frozen=True)
class FailDrive:
    drive_id: int


Op = CreateVolume | ResizeVolume | DeleteVolume | MapChunk | UnmapChunk | AddDrive | FailDrive

_QQ = struct.Struct("<QQ")
_Q = struct.Struct("<Q")
_QQB = struct.Struct("<QQB")
_II = struct.Struct("<II")
_IIBQ = struct.Struct("<IIBQ")
_I = struct.Struct("<I")
_H = struct.Struct("<H")


def encode_op(op: Op) -> bytes:
    """One op as ``type:u8`` followed by its fields; see docs/volumes.md for each layout."""
    match op:
        case CreateVolume(vid, name, size):
            raw = name.encode()
            return b"\x01" + _QQ.pack(vid, size) + _H.pack(len(raw)) + raw
        case ResizeVolume(vid, size):
            return b"\x02" + _QQ.pack(vid, size)
        case DeleteVolume(vid):
            return b"\x03" + _Q.pack(vid)
        case MapChunk(vid, chunk, locs):
            return b"\x04" + _QQB.pack(vid, chunk, len(locs)) + b"".join(
                _II.pack(d, s) for d, s in locs)
        case UnmapChunk(vid, chunk):
            return b"\x05" + _QQ.pack(vid, chunk)
        case AddDrive(did, node, role, sectors):
            return b"\x06" + _IIBQ.pack(did, node, role, sectors)
        case FailDrive(did):
            return b"\x07" + _I.pack(did)
    raise TypeError(f"not an op: {op!r}")


def decode_ops(buf: bytes) -> list[Op]:
    """Every op in ``buf``; raises ValueError on anything malformed (callers check digests
    first, so this only fires on a bug or an unknown future version)."""
    ops: list[Op] = []
    pos = 0
    while pos < len(buf):
        kind = buf[pos]
        pos += 1
        op, pos = _decode_one(kind, buf, pos)
        ops.append(op)
    return ops


def _decode_one(kind: int, buf: bytes, pos: int) -> tuple[Op, int]:
    try:
        if kind == 1:
            vid, size = _QQ.unpack_from(buf, pos)
            (n,) = _H.unpack_from(buf, pos + 16)
            name = buf[pos + 18:pos + 18 + n].decode()
            return CreateVolume(vid, name, size), pos + 18 + n
        if kind == 2:
            return ResizeVolume(*_QQ.unpack_from(buf, pos)), pos + 16
        if kind == 3:
            return DeleteVolume(*_Q.unpack_from(buf, pos)), pos + 8
        if kind == 4:
            vid, chunk, n = _QQB.unpack_from(buf, pos)
            pos += _QQB.size
            locs = tuple(_II.unpack_from(buf, pos + 8 * i) for i in range(n))
            return MapChunk(vid, chunk, locs), pos + 8 * n
        if kind == 5:
            return UnmapChunk(*_QQ.unpack_from(buf, pos)), pos + 16
        if kind == 6:
            did, node, role, sectors = _IIBQ.unpack_from(buf, pos)
            return AddDrive(did, node, Role(role), sectors), pos + _IIBQ.size
        if kind == 7:
            return FailDrive(*_I.unpack_from(buf, pos)), pos + 4
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError("truncated or malformed metadata op") from exc
    raise ValueError(f"unknown metadata op type {kind}")


@dataclass
class VolumeRec:
    name: str
    size: int
    chunks: dict[int, tuple[Loc, ...]] = field(default_factory=dict)


@dataclass
class MetaState:
    """Everything the slice drives hold: volumes, chunk maps, drives and failed drives.

    Free space is not stored: a slot is free exactly when no chunk map names it, so allocation
    state can never disagree with the maps.
    """

    volumes: dict[int, VolumeRec] = field(default_factory=dict)
    drives: dict[int, AddDrive] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)

    def apply(self, op: Op) -> None:
        match op:
            case CreateVolume(vid, name, size):
                self.volumes[vid] = VolumeRec(name, size)
            case ResizeVolume(vid, size):
                self.volumes[vid].size = size
            case DeleteVolume(vid):
                self.volumes.pop(vid, None)
            case MapChunk(vid, chunk, locs):
                self.volumes[vid].chunks[chunk] = locs
            case UnmapChunk(vid, chunk):
                self.volumes[vid].chunks.pop(chunk, None)
            case AddDrive():
                self.drives[op.drive_id] = op
            case FailDrive(did):
                self.failed.add(did)

    def snapshot_ops(self) -> list[Op]:
        """The ops that rebuild this state from an empty one, in a replayable order."""
        ops: list[Op] = list(self.drives.values())
        ops.extend(FailDrive(d) for d in sorted(self.failed))
        for vid, vol in sorted(self.volumes.items()):
            ops.append(CreateVolume(vid, vol.name, vol.size))
            ops.extend(MapChunk(vid, c, locs) for c, locs in sorted(vol.chunks.items()))
        return ops
