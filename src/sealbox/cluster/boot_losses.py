"""Drives that do not open at start-up: when it is safe to fail them, and failing them in the
volume engine before it serves anything.

A drive whose file is gone or unreadable at start-up is usually a disk that died while the
cluster was down; the cluster fails it as it would in service and serves the volumes from the
other copies. But "not there" also describes a filesystem not mounted yet, a node whose disks
are slow to appear, or a device link created late, and failing such drives would throw away
copies that are merely late. So drives are failed at start-up only when losing them loses
nothing:

* at most one node has lost every one of its drives. A whole node missing looks like a node
  that is down or whose disks are not mounted yet; one such node is what two copies on two
  nodes are for (it is failed and re-protected, as a dead node must be), two are an outage
  to wait out, not disks to throw away;
* every chunk still has a copy on a drive that opened (this is what makes a loss impossible:
  a chunk left with one copy before the shutdown, its re-protection unfinished, may have had
  that copy on a missing drive, and two drives dying on two nodes may hold both copies).

Otherwise nothing is failed, the volumes are not served (``volumesOffline``), and the start-up
retries until the drives are back or an administrator acts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sealbox.cluster.drives import engine_id
from sealbox.cluster.topology import DriveRole
from sealbox.storage import volume_repair
from sealbox.storage.engine import StorageEngine
from sealbox.store.base import Doc


def unsafe_reason(engine: StorageEngine, broken: Mapping[int, Doc],
                  active: Iterable[Doc]) -> str | None:
    """Why failing the ``broken`` drives (by drive ID; ``active``: every drive in service,
    broken or not) could lose data, or None if it cannot."""
    per_node: dict[int, int] = {}
    for doc in active:
        per_node[doc["nodeID"]] = per_node.get(doc["nodeID"], 0) + 1
    gone: dict[int, int] = {}
    for doc in broken.values():
        gone[doc["nodeID"]] = gone.get(doc["nodeID"], 0) + 1
    whole = sorted(n for n, count in gone.items() if count >= per_node.get(n, 0))
    if len(whole) > 1:
        return (f"every drive of nodes {', '.join(map(str, whole))} is missing; no drive is "
                "failed while more than one node is entirely missing")
    lost = volume_repair.chunks_without_live_copy(engine)
    if lost:
        return (f"{lost} chunk(s) have no copy on the drives that opened; no drive is failed "
                "while that data is only on missing drives")
    return None


def fail_in_engine(engine: StorageEngine, broken: Mapping[int, Doc]) -> None:
    """Record the ``broken`` drives as failed in the volume metadata, durably, before the
    engine serves a write: a copy that misses writes must never be read again, even if its
    drive comes back after a crash that happens before the cluster records the failure."""
    for doc in broken.values():
        eid = engine_id(doc)
        if doc["role"] == DriveRole.BLOCK:
            engine.fail_drive(eid)
        else:
            volume_repair.fail_slice_drive(engine, eid)

