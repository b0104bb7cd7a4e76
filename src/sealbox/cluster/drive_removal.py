"""Whether drives can leave the cluster (RemoveDrives) without leaving data or the volume
metadata with fewer than two copies on two different nodes.

RemoveDrives copies a drive's data elsewhere before the drive leaves, so what matters is where
the copies can go: only to drives that *stay* — active, not failed, not being added, not
being removed (by this request or another one). The whole request is judged at once, before
anything changes: judging drive by drive would let the first drives leave and refuse only the
last one, with the metadata already down to one copy. The removal job judges the drives it
still has to drain again before each one, since drives may fail meanwhile.

Refusals are :class:`NotEnoughSpace` (``xNotEnoughSpace``), the error the volume engine
already gives when it finds no room for a copy on another node.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sealbox.cluster.topology import DriveRole, DriveStatus
from sealbox.storage.volume_errors import NotEnoughSpace
from sealbox.store.base import Doc


def _advice(role: DriveRole) -> str:
    return (f"add {role} drives on other nodes first (sealbox drive insert, then AddDrives), "
            "or remove fewer drives; nothing was changed.")


@dataclass(frozen=True)
class Load:
    """What the block drives leaving would have to hand over, as the volume engine sees it.

    ``free``: free chunk slots per node on the block drives that stay. ``needs``: how many
    chunks need ``copies`` new copies, none of them on the ``kept`` nodes (which keep the
    chunk's other copies), keyed ``(kept, copies)``."""

    free: Mapping[int, int]
    needs: Mapping[tuple[frozenset[int], int], int]


class LoadSource(Protocol):
    """The engine side (implemented by :class:`sealbox.cluster.drive_ops.DriveOps`)."""

    def removal_load(self, leaving: Sequence[Doc], staying: Sequence[Doc]) -> Load: ...


def staying(docs: Sequence[Doc], leaving: Collection[int]) -> list[Doc]:
    """The drives that keep serving once ``leaving`` are gone."""
    return [d for d in docs if d["status"] == DriveStatus.ACTIVE and not d.get("removing")
            and not d.get("pendingAdd") and d["driveID"] not in leaving]


def check(docs: Sequence[Doc], leaving: Collection[int], source: LoadSource) -> None:
    """Raise :class:`NotEnoughSpace` unless the drives ``leaving`` (IDs of active drives)
    can all leave with every chunk and the volume metadata kept on two nodes. ``docs``: every
    drive record."""
    going = [d for d in docs if d["driveID"] in leaving]
    stay = staying(docs, leaving)
    names = sorted(leaving)
    for role, what in ((DriveRole.SLICE, "the volume metadata"),
                       (DriveRole.BLOCK, "every chunk of data")):
        if any(d["role"] == role for d in going):
            _two_nodes(names, role, what, stay)
    if any(d["role"] == DriveRole.BLOCK for d in going):
        blocks = [d for d in stay if d["role"] == DriveRole.BLOCK]
        _room(names, source.removal_load([d for d in going if d["role"] == DriveRole.BLOCK],
                                         blocks))


def _two_nodes(names: list[int], role: DriveRole, what: str, stay: Sequence[Doc]) -> None:
    nodes = sorted({d["nodeID"] for d in stay if d["role"] == role})
    if len(nodes) < 2:
        where = f"on node(s) {nodes} only" if nodes else "on no node"
        raise NotEnoughSpace(
            f"Drives {names} cannot be removed: {what} must keep two copies on two different "
            f"nodes, and the {role} drives that would stay active are {where} "
            f"(drives that are failed, available or being removed do not count); "
            f"{_advice(role)}")


def _room(names: list[int], load: Load) -> None:
    """Enough free slots, and enough of them off each node for the chunks that must avoid it
    (a chunk keeping a copy there, or needing two new copies on two nodes). Necessary
    conditions: if placement still runs short, the job stops and puts the drives back."""
    total = sum(load.free.values())
    wanted = sum(copies * n for (_, copies), n in load.needs.items())
    short = wanted > total
    for node in load.free:
        off = sum(n * (copies if node in kept else copies - 1)
                  for (kept, copies), n in load.needs.items())
        short = short or off > total - load.free[node]
    if short:
        raise NotEnoughSpace(
            f"Drives {names} cannot be removed: {wanted} chunk copies would have to move to "
            f"block drives of other nodes, and those have {total} free chunk slots "
            f"({dict(sorted(load.free.items()))} per node), not enough where each copy may "
            f"go; {_advice(DriveRole.BLOCK)}")
