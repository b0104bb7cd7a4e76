"""The engine's descriptors: what the cluster hands in and what it gets back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sealbox.storage.blockdev import BlockDevice
from sealbox.storage.slice_ops import Role


@dataclass(frozen=True)
class DriveSpec:
    """A drive handed to the engine. ``device`` is already unlocked/decrypted."""

    drive_id: int
    node_id: int
    role: Role
    device: BlockDevice


@dataclass(frozen=True)
class VolumeInfo:
    volume_id: int
    name: str
    size: int
    allocated_bytes: int  # mapped chunks x chunk size (one copy)


@dataclass(frozen=True)
class DriveUsage:
    drive_id: int
    node_id: int
    role: Role
    used_bytes: int
    total_bytes: int
    failed: bool


@dataclass(frozen=True)
class MirrorWitness:
    """Where the cluster keeps the metadata mirror set, outside the slice drives (see
    :mod:`sealbox.storage.slice_store`): the set recorded last (None if never recorded), and
    how to record a new one durably before the engine relies on it."""

    recorded: frozenset[int] | None
    record: Callable[[list[int]], None]
