"""Chunks, block-drive slots and the per-sector checksum entries that guard them.

A volume is thin-provisioned in 1 MiB chunks; each copy of a chunk lives in a *slot* of a block
drive. The first part of every block drive is a checksum area: four sectors per slot, holding
one 64-byte entry per data sector of the slot::

    [durable: 16][prev: 16][cur: 16][reserved: 16]

Each field is a *token*: a keyed 128-bit hash of a plaintext sector, bound to its volume, chunk
and sector, or all zeros for "no token". An all-zero entry means the sector was never written
since its slot was allocated and reads as zeros without touching the data. A sector whose data
matches none of the non-zero tokens is bad on that copy. Why three tokens, and the order of the
writes that keeps them consistent with the data through a crash, is in docs/volumes.md.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

from sealbox.storage.blockdev import SECTOR_SIZE

if TYPE_CHECKING:
    from sealbox.storage._native import Hasher


def _native_hasher() -> type[Hasher] | None:
    """The C build of :meth:`Sealer.tokens` (setup.py), or None where it was not built (no C
    compiler or OpenSSL headers at install): the Python code then computes equal tokens."""
    try:
        from sealbox.storage._native import Hasher
    except ImportError:
        return None
    return Hasher


_NativeHasher = _native_hasher()

CHUNK_SIZE = 1 << 20
SECTORS_PER_CHUNK = CHUNK_SIZE // SECTOR_SIZE
ENTRY_SIZE = 64
TOKEN_SIZE = 16
ENTRIES_PER_SECTOR = SECTOR_SIZE // ENTRY_SIZE
CSUM_SECTORS = SECTORS_PER_CHUNK // ENTRIES_PER_SECTOR
NO_TOKEN = bytes(TOKEN_SIZE)
_SALT = struct.Struct("<QQ")
_FIELDS = struct.Struct("16s16s16s16x")
# Without the C extension, each sector is fed to SHA-256 in pieces shorter than 2048 bytes.
# CPython's hashlib releases the GIL (and allocates a lock for the hash object) for any update
# of 2048 bytes or more (HASHLIB_GIL_MINSIZE): once per 4 KiB sector, 256 times per chunk, for
# about 3 us of work each. With the NBD server's worker threads all wanting the GIL, every such
# release became a hand-off between threads: perf showed futex wake-ups and context switches
# as the largest cost of the server (about a quarter of its CPU), and holding the GIL here took
# a volume write through NBD from about 100 to 150 MB/s and a read from 170 to 280 MB/s. Held,
# the GIL is released only around real I/O and long cipher runs. The digest is the same
# whatever the pieces. The C extension does better: one call per request, all of it hashed
# with the GIL released once (writes about 1.3x, reads about 1.7x faster; bench/README.md).
_PIECES = ((0, 2047), (2047, 4094), (4094, SECTOR_SIZE))
EMPTY_FIELDS = (NO_TOKEN, NO_TOKEN, NO_TOKEN)


@dataclass(frozen=True)
class BlockLayout:
    """Where slots live on a block drive of ``sector_count`` sectors."""

    slots: int
    data_start: int

    @classmethod
    def for_device(cls, sector_count: int) -> BlockLayout:
        # n slots need 4n checksum sectors, rounded up to a chunk so that data stays
        # chunk-aligned (one chunk = one aligned 1 MiB run, friendly to XTS units and pages).
        n = sector_count // (SECTORS_PER_CHUNK + CSUM_SECTORS)
        while n > 0 and _data_start(n) + n * SECTORS_PER_CHUNK > sector_count:
            n -= 1
        return cls(n, _data_start(n))

    def csum_sector(self, slot: int) -> int:
        return slot * CSUM_SECTORS

    def data_sector(self, slot: int) -> int:
        return self.data_start + slot * SECTORS_PER_CHUNK


def _data_start(slots: int) -> int:
    csum = slots * CSUM_SECTORS
    return -(-csum // SECTORS_PER_CHUNK) * SECTORS_PER_CHUNK


class Sealer:
    """Computes sector tokens: SHA-256 of ``secret block || volume, sector || plaintext``,
    truncated to 128 bits.

    Keyed, because an unkeyed hash of plaintext would let anyone who can read the checksum
    area confirm guesses of content (a zero sector, a known file). The key fills the whole
    first SHA-256 block, so the hash continues from a secret chaining value; with inputs of
    one fixed length (hence prefix-free) that is a PRF (Bellare-Canetti-Krawczyk 1996, the
    cascade construction), without HMAC's second pass. Measured here it runs at about twice
    the speed of keyed BLAKE2b (SHA-NI), and the hash is the main CPU cost of the data path.
    """

    def __init__(self, key: bytes | None, *, native: bool | None = None) -> None:
        """``native``: use the C extension (True: it must be built), the Python code (False),
        or the C extension when it is built (None, the default)."""
        if native and _NativeHasher is None:
            raise RuntimeError("the C extension sealbox.storage._native is not built")
        block = hashlib.blake2b(key or b"", digest_size=64, person=b"sbx-sector-key").digest()
        self._base = hashlib.sha256(block)
        self._native = (_NativeHasher(block)
                        if _NativeHasher is not None and native is not False else None)

    @property
    def native(self) -> bool:
        """Whether tokens are computed by the C extension."""
        return self._native is not None

    def token(self, volume_id: int, chunk: int, sector: int, data: bytes | memoryview) -> bytes:
        """The token of one sector (``data`` is exactly one sector)."""
        h = self._base.copy()
        h.update(_SALT.pack(volume_id, chunk * SECTORS_PER_CHUNK + sector))
        view = memoryview(data)
        for lo, hi in _PIECES:
            h.update(view[lo:hi])
        tok = h.digest()[:TOKEN_SIZE]
        return tok if tok != NO_TOKEN else b"\1" + tok[1:]

    def tokens(self, volume_id: int, chunk: int, first: int, data: bytes | memoryview,
               ) -> list[bytes]:
        """One token per sector of ``data``, which starts at sector ``first`` of the chunk.

        Binding the token to (volume, chunk, sector) means that a stale chunk map pointing at a
        slot now owned by another chunk fails verification instead of returning its data.
        """
        start = chunk * SECTORS_PER_CHUNK + first
        if self._native is not None:
            return self._native.tokens(volume_id, start, data)
        view = memoryview(data)
        size = len(view)
        count = size // SECTOR_SIZE
        # The same steps as token(), one sector at a time, but each step is a map() over the
        # hash type's own methods: the per-sector loop runs in C, with no bytecode per sector
        # (this is the hottest loop of the data path; SHA-256 itself is about 60% of it).
        kind = type(self._base)
        hashes = list(map(kind.copy, repeat(self._base, count)))
        _drain(map(kind.update, hashes, map(_SALT.pack, repeat(volume_id),
                                            range(start, start + count))))
        for lo, hi in _PIECES:
            pieces = map(slice, range(lo, size, SECTOR_SIZE), range(hi, size + 1, SECTOR_SIZE))
            _drain(map(kind.update, hashes, map(view.__getitem__, pieces)))
        out = [d[:TOKEN_SIZE] for d in map(kind.digest, hashes)]
        if NO_TOKEN in out:  # 2**-128: never in practice, but zero must mean "no token"
            out = [t if t != NO_TOKEN else b"\1" + t[1:] for t in out]
        return out


def _drain(calls: Iterator[object]) -> None:
    """Run a lazy map() to the end, keeping nothing."""
    deque(calls, maxlen=0)


def csum_span(first: int, count: int) -> tuple[int, int]:
    """The checksum sectors (offset within the slot's four, how many) covering the entries of
    data sectors ``first`` .. ``first + count - 1``."""
    lo = first // ENTRIES_PER_SECTOR
    hi = (first + count - 1) // ENTRIES_PER_SECTOR + 1
    return lo, hi - lo


def entry_fields(region: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes, bytes]]:
    """(durable, prev, cur) of each entry in ``region`` (whole entries), parsed in C."""
    return list(_FIELDS.iter_unpack(region))
