"""The mirrored metadata store: the same record log on two slice drives of different nodes.

A commit returns only when its record is durable (written and flushed) on every live mirror,
so an allocating write that waits for it is never acknowledged ahead of its chunk map. A mirror
whose drive fails is dropped and the failure is recorded on the survivors; with none left the
store refuses further changes (the volumes stay readable from the in-memory maps).

The witness. Which slice drives hold every acknowledged record is known only to the running
store; after a restart with a slice drive missing, the newest copy found on the others may be
an old one (a drive that was a mirror once). So the store reports its mirror set to a *witness*
callback, which keeps it outside the slice drives (the cluster: a file in the data dir,
:mod:`sealbox.cluster.mirror_record`), whenever it changes, at the points that keep this true:
**every mirror the witness last recorded holds every acknowledged record**. A set grows only
once the new mirror holds a snapshot; it shrinks before any commit that the dropped mirror
misses is acknowledged. At the next open, a copy from one of the recorded mirrors is therefore
current, whatever other slice drives are missing (see :meth:`SliceStore.current_of`). If the
witness cannot be told, the store refuses further changes rather than acknowledge one the
witness does not cover.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Sequence

from sealbox.storage.blockdev import BlockDevice
from sealbox.storage.slice_log import Loaded, MetaDigest, SliceMirror, encode_record
from sealbox.storage.slice_ops import FailDrive, MetaState, Op, encode_op
from sealbox.storage.volume_errors import MetadataNotCurrent, MetadataUnavailable, NotEnoughSpace

Witness = Callable[[list[int]], None]
"""Told the ids of the mirrors that hold every acknowledged record, durably, when they change."""


def _snapshot(state: MetaState) -> bytes:
    return b"".join(encode_op(op) for op in state.snapshot_ops())


class SliceStore:
    """Owns the :class:`MetaState`; every change goes through :meth:`commit`."""

    def __init__(self, mirrors: list[SliceMirror], store_id: bytes, seq: int,
                 state: MetaState, digest: MetaDigest, witness: Witness | None = None) -> None:
        self._mirrors = mirrors
        self._store_id = store_id
        self._seq = seq
        self._digest = digest
        self._witness = witness
        self._refusing: str | None = None  # why changes are refused (the witness failed)
        self.state = state
        self.lock = threading.RLock()
        """Held while committing; callers hold it across read-decide-commit sequences."""

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def mirror_ids(self) -> list[int]:
        return [m.drive_id for m in self._mirrors]

    @classmethod
    def format(cls, devs: Sequence[tuple[int, BlockDevice]], key: bytes | None,
               ops: Sequence[Op], witness: Witness | None = None) -> SliceStore:
        """A new store on ``devs`` holding the state built by ``ops``."""
        digest = MetaDigest(key)
        state = MetaState()
        for op in ops:
            state.apply(op)
        mirrors = [SliceMirror(did, dev, digest) for did, dev in devs]
        store = cls(mirrors, os.urandom(16), 0, state, digest, witness)
        store._compact_all()
        return store

    @staticmethod
    def load_all(devs: Sequence[tuple[int, BlockDevice]],
                 key: bytes | None) -> dict[int, tuple[SliceMirror, Loaded | None]]:
        """Every slice drive's own view; a drive that cannot be read holds nothing."""
        digest = MetaDigest(key)
        out: dict[int, tuple[SliceMirror, Loaded | None]] = {}
        for did, dev in devs:
            mirror = SliceMirror(did, dev, digest)
            try:
                out[did] = (mirror, mirror.load())
            except Exception:  # a gone or failing drive simply holds no usable copy
                out[did] = (mirror, None)
        return out

    @staticmethod
    def best_of(loaded: dict[int, tuple[SliceMirror, Loaded | None]]) -> Loaded:
        """The view with the highest committed sequence (then the newest superblock)."""
        views = [v for _, v in loaded.values() if v is not None]
        if not views:
            raise MetadataUnavailable("no slice drive holds readable volume metadata")
        return max(views, key=lambda v: (v.seq, v.superblock.gen))

    @classmethod
    def current_of(cls, loaded: dict[int, tuple[SliceMirror, Loaded | None]],
                   witnessed: Collection[int]) -> Loaded:
        """The newest view among the drives the witness last recorded (``witnessed``): each
        of them holds every acknowledged record, so any one that loads is current, whatever
        other slice drives are missing. Raises :class:`MetadataNotCurrent` if none loads: a
        copy found elsewhere could be an old one, and serving it would lose writes."""
        views = {d: loaded[d][1] for d in witnessed if d in loaded}
        usable = {d: v for d, v in views.items() if v is not None}
        if not usable:
            raise MetadataNotCurrent(
                "the slice drives that hold the current volume metadata "
                f"({', '.join(map(str, sorted(witnessed)))}) did not open or hold no readable "
                "copy; a copy on another slice drive could be an old one", sorted(witnessed))
        return cls.best_of({d: (loaded[d][0], v) for d, v in usable.items()})

    @classmethod
    def open(cls, loaded: dict[int, tuple[SliceMirror, Loaded | None]], best: Loaded,
             mirror_ids: Sequence[int], key: bytes | None,
             witness: Witness | None = None) -> SliceStore:
        """The store at ``best``, rewritten as a fresh snapshot onto the ``mirror_ids`` drives
        so that both copies agree again (a lagging or corrupt copy is replaced). The witness
        learns the new mirror set only once they all hold it."""
        mirrors = [loaded[d][0] for d in mirror_ids]
        if not mirrors:
            raise MetadataUnavailable("no usable slice drive to keep volume metadata on")
        store = cls(mirrors, best.store_id, best.seq, best.state, MetaDigest(key), witness)
        store._compact_all()
        return store

    def add_mirror(self, drive_id: int, dev: BlockDevice) -> None:
        """Keep a copy on one more slice drive too, starting with a snapshot of now."""
        with self.lock:
            mirror = SliceMirror(drive_id, dev, self._digest)
            try:
                mirror.load()  # continue its A/B alternation if it holds an old copy
            except Exception:  # unreadable old content is simply overwritten
                mirror = SliceMirror(drive_id, dev, self._digest)
            mirror.compact(self._store_id, self._seq, _snapshot(self.state))
            self._mirrors.append(mirror)
            self._tell_witness()  # it holds everything now: the set may grow

    def drop_mirror(self, drive_id: int) -> None:
        """Stop keeping a copy on a mirror whose drive is healthy (RemoveDrives, or a failure
        noticed elsewhere), durably: the witness forgets it before the ``FailDrive`` record
        it misses is written. Refused if it holds the only copy."""
        with self.lock:
            remaining = [m for m in self._mirrors if m.drive_id != drive_id]
            if not remaining:
                raise MetadataUnavailable(
                    f"slice drive {drive_id} holds the only copy of the volume metadata")
            self._refuse_if_needed()
            if len(remaining) < len(self._mirrors):
                self._tell_witness(remaining)
            self._mirrors = remaining
            self.commit([FailDrive(drive_id)])

    def _compact_all(self) -> None:
        snap = _snapshot(self.state)
        failed = self._each_mirror(lambda m: m.compact(self._store_id, self._seq, snap))
        self._tell_witness()  # every mirror left holds the snapshot: it is the set now
        self.commit([FailDrive(d) for d in failed])

    def _tell_witness(self, mirrors: Sequence[SliceMirror] | None = None) -> None:
        """Record ``mirrors`` (default: the current ones) with the witness. If that fails the
        store refuses every later change: acknowledging one the witness does not cover could
        let a later start-up serve an old copy."""
        if self._witness is None:
            return
        ids = [m.drive_id for m in (self._mirrors if mirrors is None else mirrors)]
        try:
            self._witness(ids)
        except Exception as exc:
            self._refusing = f"the metadata mirror set could not be recorded ({exc})"
            raise MetadataUnavailable(
                f"volume metadata cannot change: {self._refusing}") from exc

    def _refuse_if_needed(self) -> None:
        if self._refusing is not None:
            raise MetadataUnavailable(f"volume metadata cannot change: {self._refusing}")

    def _each_mirror(self, action: Callable[[SliceMirror], None]) -> list[int]:
        """Run ``action`` on every mirror at once (each waits on its own drive's flush, so
        a commit costs one flush latency, not two); drop the mirrors that fail and return
        their ids."""
        errors: dict[int, BaseException] = {}

        def run(i: int, m: SliceMirror) -> None:
            try:
                action(m)
            except BaseException as exc:  # sorted out below, in the calling thread
                errors[i] = exc

        helpers = [threading.Thread(target=run, args=(i, m), daemon=True)
                   for i, m in enumerate(self._mirrors) if i > 0]
        for t in helpers:
            t.start()
        if self._mirrors:
            run(0, self._mirrors[0])
        for t in helpers:
            t.join()
        for exc in errors.values():
            if isinstance(exc, OverflowError):
                raise NotEnoughSpace("slice drive has no room for the volume metadata") from exc
            if not isinstance(exc, Exception):
                raise exc  # KeyboardInterrupt and the like are not drive failures
        failed = [m for i, m in enumerate(self._mirrors) if i in errors]
        if len(failed) == len(self._mirrors):
            raise MetadataUnavailable("no slice drive accepted the metadata update")
        self._mirrors = [m for m in self._mirrors if m not in failed]
        return [m.drive_id for m in failed]

    def commit(self, ops: Sequence[Op]) -> None:
        """Make ``ops`` durable on every live mirror, then apply them to :attr:`state`.

        Raises :class:`MetadataUnavailable` if no mirror took the record and
        :class:`NotEnoughSpace` if the snapshot no longer fits; the state is then unchanged,
        and the store refuses every later change (see below).
        """
        if not ops:
            return
        with self.lock:
            self._refuse_if_needed()
            record = encode_record(self._store_id, self._seq + 1,
                                   b"".join(encode_op(op) for op in ops), self._digest)
            snap: list[bytes] = []

            def write(m: SliceMirror) -> None:
                if not m.append(record):
                    if not snap:
                        snap.append(_snapshot(self.state))
                    m.compact(self._store_id, self._seq, snap[0])
                    if not m.append(record):
                        raise OverflowError("metadata record larger than the log area")
                m.dev.flush()

            try:
                failed = self._each_mirror(write)
            except Exception as exc:
                # No mirror took it, or one ran out of room: some may hold the record all the
                # same (written, then the flush failed). Another commit would reuse its number
                # and be lost behind it at the next open, so none is made until a restart,
                # which reads what is really there.
                self._refusing = f"a metadata update failed ({exc})"
                raise
            if failed:
                # Before this commit counts: the dropped mirrors miss it. If the witness
                # cannot be told, the record (on the survivors) stays unacknowledged and
                # unapplied, and no later commit is made (it would reuse its number).
                self._tell_witness()
            self._seq += 1
            for op in ops:
                self.state.apply(op)
            # the survivors must stop trusting a dropped mirror's copy at the next open
            self.commit([FailDrive(d) for d in failed])
