"""The mirrored metadata store: the same record log on two slice drives of different nodes.

A commit returns only when its record is durable (written and flushed) on every live mirror,
so an allocating write that waits for it is never acknowledged ahead of its chunk map. A mirror
whose drive fails is dropped and the failure is recorded on the survivors; with none left the
store refuses further changes (the volumes stay readable from the in-memory maps).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

from sealbox.storage.blockdev import BlockDevice
from sealbox.storage.slice_log import Loaded, MetaDigest, SliceMirror, encode_record
from sealbox.storage.slice_ops import FailDrive, MetaState, Op, encode_op
from sealbox.storage.volume_errors import MetadataUnavailable, NotEnoughSpace


def _snapshot(state: MetaState) -> bytes:
    return b"".join(encode_op(op) for op in state.snapshot_ops())


class SliceStore:
    """Owns the :class:`MetaState`; every change goes through :meth:`commit`."""

    def __init__(self, mirrors: list[SliceMirror], store_id: bytes, seq: int,
                 state: MetaState, digest: MetaDigest) -> None:
        self._mirrors = mirrors
        self._store_id = store_id
        self._seq = seq
        self._digest = digest
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
               ops: Sequence[Op]) -> SliceStore:
        """A new store on ``devs`` holding the state built by ``ops``."""
        digest = MetaDigest(key)
        state = MetaState()
        for op in ops:
            state.apply(op)
        mirrors = [SliceMirror(did, dev, digest) for did, dev in devs]
        store = cls(mirrors, os.urandom(16), 0, state, digest)
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
    def open(cls, loaded: dict[int, tuple[SliceMirror, Loaded | None]], best: Loaded,
             mirror_ids: Sequence[int], key: bytes | None) -> SliceStore:
        """The store at ``best``, rewritten as a fresh snapshot onto the ``mirror_ids`` drives
        so that both copies agree again (a lagging or corrupt copy is replaced)."""
        mirrors = [loaded[d][0] for d in mirror_ids]
        if not mirrors:
            raise MetadataUnavailable("no usable slice drive to keep volume metadata on")
        store = cls(mirrors, best.store_id, best.seq, best.state, MetaDigest(key))
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

    def _compact_all(self) -> None:
        snap = _snapshot(self.state)
        failed = self._each_mirror(lambda m: m.compact(self._store_id, self._seq, snap))
        self.commit([FailDrive(d) for d in failed])

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

        Raises :class:`MetadataUnavailable` if no mirror took the record (the state is then
        unchanged) and :class:`NotEnoughSpace` if the snapshot no longer fits.
        """
        if not ops:
            return
        with self.lock:
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

            failed = self._each_mirror(write)
            self._seq += 1
            for op in ops:
                self.state.apply(op)
            # the survivors must stop trusting a dropped mirror's copy at the next open
            self.commit([FailDrive(d) for d in failed])
