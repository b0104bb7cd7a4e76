"""Verified reads and ordered writes of sector runs within one chunk, on all of its copies.

Callers hold the range locks of the sectors (:mod:`volume_locks`): a reader must not see a
checksum entry and a data sector from two moments of a concurrent write (verification would
fail for no fault of the disk), and two writers must not rewrite one checksum sector at once.
Any exception from a copy's device means that copy is unavailable for this request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat

from sealbox.storage.blockdev import SECTOR_SIZE, BlockDevice
from sealbox.storage.chunk import (
    CSUM_SECTORS,
    EMPTY_FIELDS,
    ENTRIES_PER_SECTOR,
    ENTRY_SIZE,
    NO_TOKEN,
    Sealer,
    csum_span,
    entry_fields,
)
from sealbox.storage.volume_errors import VolumeDataUnavailable

_EMPTY_PAIR = NO_TOKEN + NO_TOKEN  # durable and prev of a first write


@dataclass(frozen=True)
class Copy:
    """One copy of a chunk: a slot on a block drive."""

    drive_id: int
    slot: int
    dev: BlockDevice
    csum_sector: int
    data_sector: int


# Checksum sectors remembered as empty (see ChunkIO.mark_empty). Past this many the memory is
# dropped: forgetting only costs a read, so a writer that allocates and never writes is bounded.
_EMPTY_KNOWN_MAX = 1 << 16


class ChunkIO:
    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        # (drive id, slot, checksum sector of the slot) whose 64 entries are known to be
        # empty in the device's current contents: set when a slot is emptied for a new chunk,
        # removed before anything else writes those entries. A streaming write of a fresh
        # chunk then skips reading (and decrypting) the checksum sector it is about to fill.
        # Set operations are atomic under the GIL; a key is only used by the writer holding
        # the range lock of its group (one checksum sector = one lock group).
        self._empty: set[tuple[int, int, int]] = set()

    def mark_empty(self, drive_id: int, slot: int) -> None:
        """Remember that every entry of the slot was just emptied (and nothing else wrote
        them since)."""
        if len(self._empty) > _EMPTY_KNOWN_MAX:
            self._empty.clear()
        self._empty.update((drive_id, slot, k) for k in range(CSUM_SECTORS))

    def _known_empty(self, copy: Copy, lo: int, count: int) -> bool:
        """Whether checksum sectors ``lo .. lo+count-1`` of the copy are known to be empty;
        either way they are forgotten, because the caller is about to write them."""
        keys = [(copy.drive_id, copy.slot, k) for k in range(lo, lo + count)]
        known = all(k in self._empty for k in keys)
        self._empty.difference_update(keys)
        return known

    def read(self, vid: int, chunk: int, copies: Sequence[Copy], first: int,
             count: int) -> bytes:
        """Sectors ``first .. first+count-1`` of the chunk, each verified on some copy.

        Raises :class:`VolumeDataUnavailable` if some sector verifies on no copy; never
        returns data that failed its check.
        """
        return self.read_with_tokens(vid, chunk, copies, first, count)[0]

    def read_with_tokens(self, vid: int, chunk: int, copies: Sequence[Copy], first: int,
                         count: int) -> tuple[bytes, list[bytes] | None]:
        """Like :meth:`read`, plus the tokens of the returned sectors when verification
        computed all of them from exactly these bytes (the common case: every sector current
        on one copy), else None. A token depends only on (volume, chunk, sector, plaintext),
        not on the drive or slot, so a caller writing these bytes to another copy can use
        them instead of hashing the same plaintext again."""
        out: bytearray | None = None
        todo = list(range(count))
        for copy in copies:
            checked = self._check_copy(vid, chunk, copy, first, todo)
            if checked is None:
                continue  # the device failed: the next copy must serve
            data, good, left, tokens = checked
            if out is None and not left and len(good) == count:
                # the common case: all good on the first copy, no copying
                return data, tokens
            out = out if out is not None else bytearray(count * SECTOR_SIZE)
            lo = todo[0]
            for i in good:
                out[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE] = data[
                    (i - lo) * SECTOR_SIZE:(i - lo + 1) * SECTOR_SIZE]
            todo = left
            if not todo:
                return bytes(out), None
        raise VolumeDataUnavailable(
            f"volume {vid}: chunk {chunk} sector {first + todo[0]} is unreadable on every copy")

    def _check_copy(self, vid: int, chunk: int, copy: Copy, first: int, todo: list[int],
                    ) -> tuple[bytes, list[int], list[int], list[bytes] | None] | None:
        """Read the span of ``todo`` from ``copy``: (its data starting at sector ``todo[0]``,
        sectors that verified, sectors that did not, the tokens of that data if all were
        computed and all matched), or None if the device failed. Sectors with an empty entry
        are in neither list: they read as zeros."""
        lo, hi = todo[0], todo[-1] + 1
        clo, cn = csum_span(first + lo, hi - lo)
        try:
            csum = copy.dev.read(copy.csum_sector + clo, cn)
            data = copy.dev.read(copy.data_sector + first + lo, hi - lo)
        except Exception:  # a failing or gone device
            return None
        start = (first + lo - clo * ENTRIES_PER_SECTOR) * ENTRY_SIZE
        fields = entry_fields(memoryview(csum)[start:start + (hi - lo) * ENTRY_SIZE])
        if len(todo) == hi - lo and EMPTY_FIELDS not in fields:
            # the common case, done in bulk: every sector's data is its latest write
            tokens = self._sealer.tokens(vid, chunk, first + lo, data)
            if tokens == [f[2] for f in fields]:
                return data, todo, [], tokens
        view = memoryview(data)
        good: list[int] = []
        left: list[int] = []
        for i in todo:
            entry = fields[i - lo]
            if entry == EMPTY_FIELDS:
                continue  # never written since allocation: zeros
            sector = view[(i - lo) * SECTOR_SIZE:(i - lo + 1) * SECTOR_SIZE]
            (good if self._sealer.token(vid, chunk, first + i, sector) in entry
             else left).append(i)
        return data, good, left, None

    def write(self, vid: int, chunk: int, copies: Sequence[Copy], first: int, data: bytes,
              clean: Sequence[bool]) -> list[Copy]:
        """Write whole sectors to every copy; returns the copies that failed.

        ``clean[i]`` says whether sector ``first + i`` has not been written since the last
        completed flush (its current token then becomes the ``durable`` one).
        """
        tokens = self._sealer.tokens(vid, chunk, first, data)
        # The entries of sectors never written since allocation, (0, 0, token): built once
        # for all copies, in C (join over an interleaving), for the common first write.
        firsts = b"".join(chain.from_iterable(zip(repeat(_EMPTY_PAIR), tokens, repeat(NO_TOKEN))))
        failed = []
        for copy in copies:
            try:
                self._write_copy(copy, first, data, tokens, firsts, clean)
            except Exception:  # the caller records the drive as failed before acknowledging
                failed.append(copy)
        return failed

    def _write_copy(self, copy: Copy, first: int, data: bytes, tokens: list[bytes],
                    firsts: bytes, clean: Sequence[bool]) -> None:
        # Order: (1) entries of rewritten sectors gain the new token while keeping the old
        # ones, (2) the data, (3) entries of never-written sectors get their first token. A
        # crash at any point leaves every sector's data matching a token of its entry, or an
        # empty entry (reads as the zeros it held before). In (1), ``prev`` takes the old
        # ``cur`` (the data on disk until (2) lands), and ``durable`` takes it too if the
        # sector is clean (that content is what the last flush made durable); a dirty sector
        # keeps its ``durable``, whichever unflushed entry version reaches the disk.
        clo, cn = csum_span(first, len(tokens))
        if self._known_empty(copy, clo, cn):
            csum = bytearray(cn * SECTOR_SIZE)  # what the read would return
        else:
            csum = bytearray(copy.dev.read(copy.csum_sector + clo, cn))
        start = (first - clo * ENTRIES_PER_SECTOR) * ENTRY_SIZE
        stop = start + len(tokens) * ENTRY_SIZE
        if csum.count(0, start, stop) == stop - start:
            # Every entry empty (a fresh slot, or sectors trimmed back to zeros): no step 1;
            # the data, then entries naming it. The same steps as below, without the loops.
            copy.dev.write(copy.data_sector + first, data)
            csum[start:stop] = firsts
            copy.dev.write(copy.csum_sector + clo, bytes(csum))
            return
        fields = entry_fields(csum[start:stop])
        fresh = [i for i, f in enumerate(fields) if f[2] == NO_TOKEN]
        if len(fresh) < len(tokens):
            csum[start:stop] = b"".join(
                (d + p + c if c == NO_TOKEN else (c if cl else d) + c + t) + NO_TOKEN
                for (d, p, c), t, cl in zip(fields, tokens, clean, strict=True))
            copy.dev.write(copy.csum_sector + clo, bytes(csum))
        copy.dev.write(copy.data_sector + first, data)
        if fresh:
            for i in fresh:
                off = start + i * ENTRY_SIZE
                csum[off:off + ENTRY_SIZE] = NO_TOKEN + NO_TOKEN + tokens[i] + NO_TOKEN
            copy.dev.write(copy.csum_sector + clo, bytes(csum))

    def fill(self, vid: int, chunk: int, copy: Copy, data: bytes,
             tokens: Sequence[bytes] | None = None) -> None:
        """Write a whole chunk into a copy whose entries are empty (a re-replication target):
        the data first, then entries naming it in every field, as if written and flushed. A
        crash in between leaves empty entries; the caller maps the copy only after a flush.

        ``tokens``, if given, must be the tokens of ``data`` as :meth:`read_with_tokens`
        returned them with it (computed from these very bytes while verifying them)."""
        if tokens is None:
            tokens = self._sealer.tokens(vid, chunk, 0, data)
        elif len(tokens) * SECTOR_SIZE != len(data):
            raise ValueError("fill: one token per sector of data is needed")
        self._known_empty(copy, 0, CSUM_SECTORS)
        copy.dev.write(copy.data_sector, data)
        copy.dev.write(copy.csum_sector, b"".join(
            chain.from_iterable(zip(tokens, tokens, tokens, repeat(NO_TOKEN)))))

    @staticmethod
    def clear(copy: Copy, count: int) -> None:
        """Empty all checksum entries of the copy's slot (its sectors then read as zeros)."""
        copy.dev.write(copy.csum_sector, bytes(count * SECTOR_SIZE))
