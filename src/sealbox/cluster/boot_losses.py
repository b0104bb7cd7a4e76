"""Drives that do not open at start-up: when it is safe to fail them, and failing them in the
volume engine before it serves anything.

A drive whose file is gone or unreadable at start-up is usually a disk that died while the
cluster was down; the cluster fails it as it would in service and serves the volumes from the
other copies. But "not there" also describes a filesystem not mounted yet, a node whose disks
are slow to appear, or a device link created late, and failing such drives would throw away
copies that are merely late. So drives are failed at start-up only when that provably loses
nothing:

* the volume metadata found is current. The cluster records which slice drives hold every
  acknowledged metadata change (the mirror set, kept up to date by the engine:
  :mod:`sealbox.storage.slice_store`, in :mod:`sealbox.cluster.mirror_record`), and the
  metadata is read from one of those; if none of them opened, the engine does not open at all
  (a copy on another slice drive could be an old one, and serving it would lose every write
  since). A cluster whose mirror set was never recorded (formatted by an older sealbox, until
  its first start) needs every slice drive;
* every chunk with a copy on a missing drive still has a copy on a drive that opened (a chunk
  left with one copy before the shutdown, its re-protection unfinished, or two drives dying
  on two nodes, can leave a chunk's only copies on missing drives);
* at most one node is missing every one of its drives: one node down is what two copies on
  two nodes are for; two are an outage to wait out, not disks to throw away.

Otherwise nothing is failed, the volumes are not served (``volumesOffline``), and the start-up
retries until the drives are back: bring the missing drives (or their node, or the filesystem
that holds them) back. There is no override: volume metadata that cannot be proven current is
not served.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sealbox.cluster.drives import engine_id
from sealbox.cluster.topology import DriveRole
from sealbox.storage import volume_repair
from sealbox.storage.engine import StorageEngine
from sealbox.store.base import Doc


def unproven(slices: Iterable[int]) -> str:
    """Why slice drives (by drive ID) that did not open keep an unrecorded cluster offline."""
    return (f"slice drive(s) {', '.join(map(str, sorted(slices)))} did not open; the slice "
            "drives holding the volume metadata were never recorded (a cluster formatted "
            "before sealbox recorded them), so without every slice drive the metadata found "
            "cannot be proven current")


def unsafe_reason(engine: StorageEngine, broken: Mapping[int, Doc],
                  active: Iterable[Doc]) -> str | None:
    """Why failing the ``broken`` drives (by drive ID; ``active``: every drive in service,
    broken or not) could lose data, or None if it cannot."""
    slices = [i for i, doc in broken.items() if doc["role"] == DriveRole.SLICE]
    if slices and not engine.metadata_proven:
        return unproven(slices)
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
    lost = volume_repair.chunks_without_live_copy(engine, {engine_id(d) for d in broken.values()})
    if lost:
        return (f"{lost} chunk(s) have no copy on the drives that opened; no drive is failed "
                "while that data is only on missing drives")
    return None


def fail_in_engine(engine: StorageEngine, broken: Mapping[int, Doc]) -> None:
    """Record the ``broken`` drives as failed in the volume metadata, durably, before the
    engine serves a write: a copy that misses writes must never be read again, even if its
    drive comes back after a crash that happens before the cluster records the failure. (A
    slice drive that did not open holds no mirror: the engine chose its mirrors among the
    slice drives that opened.)"""
    for doc in broken.values():
        engine.fail_drive(engine_id(doc))
