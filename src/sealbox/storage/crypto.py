"""The sector cipher: AES-256-XTS over 4 KiB sectors, the sector number as tweak.

Threat model: an attacker who obtains the drive file (a stolen disk, a discarded image) but not
the DEK learns nothing of the data beyond which sectors were ever written. XTS gives
confidentiality only: it is malleable (a flipped ciphertext bit garbles its own 16-byte block)
and offers no integrity and no protection against replaying an old sector. That is the accepted
trade-off of every sector-level disk encryption (dm-crypt, BitLocker, SED): sizes are fixed and
there is nowhere to keep a tag.

The tweak of a sector is its number as a 16-byte little-endian value, exactly the IEEE 1619
"data unit sequence number", so the IEEE 1619 known-answer vectors apply unchanged.

Two interchangeable backends compute the same thing:
- ``evp``: the system libcrypto (OpenSSL 3) through ctypes. The key schedule is set once per
  thread and per direction; each sector costs only a re-tweak and an update. This is about
  3x faster than building a ``cryptography`` cipher per sector (see PERF-NOTES.md), because
  ``cryptography`` has no way to change an XTS tweak without a new context and key schedule.
- ``cryptography``: the pinned dependency, used when no suitable libcrypto is found or when it
  disagrees with ``cryptography`` in the start-up self-test.
``cryptography`` bundles its own (newer) OpenSSL but exports none of its symbols, so the ``evp``
backend necessarily loads the system library; the self-test proves both agree before it is used.

Large data units (drive format 2). Through ``ctypes`` the cost is per call, not per byte (about
1 us per call, two calls per data unit: re-tweak and update), so one data unit per 4 KiB sector
caps the cipher near 1.7 GB/s and makes it the largest CPU cost of a volume write. With a data
unit of ``unit_size`` bytes spanning many sectors (1 MiB: a chunk of the volume engine), a run
of sectors inside one unit is one re-tweak and one update. XTS encrypts each 16-byte block
independently, with tweak ``E_K2(unit) * alpha**j`` for block ``j`` of the unit, so a run that
starts at block ``j0`` of a unit is plain XTS whose starting tweak is ``E_K2(unit) *
alpha**j0``; OpenSSL computes the starting tweak as ``E_K2(iv)``, so the run is handed
``iv = D_K2(E_K2(unit) * alpha**j0)`` (two single-block AES calls and a GF(2**128) product,
:mod:`sealbox.storage.xts_tweaks`). The result is exactly IEEE 1619 XTS-AES with a 1 MiB
data unit: every 16-byte block of the drive still has its own tweak, which is all XTS relies
on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hmac
import os
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealbox.errors import SealboxError
from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.xts_tweaks import UnitTweaks

XTS_KEY_SIZE: Final = 64
_BATCH: Final = 256  # sectors per tweak buffer refill: 1 MiB of data
_MAX_SECTOR: Final = 1 << 64  # the tweak carries a 64-bit sector number
_MAX_UNIT: Final = 1 << 24  # the largest XTS data unit OpenSSL accepts (2**20 blocks)
_LONG_RUN: Final = 64 * 1024  # runs from this size on release the GIL (see _Libcrypto)

Buffer = bytes | bytearray | memoryview


class SectorCipherError(SealboxError):
    """The sector cipher was misused (bad key, misaligned data) or its backend failed."""

    element_name = "xSectorCipherFailed"


# (iv, offset, length): one XTS call over ``length`` bytes at ``offset`` with this 16-byte iv.
Piece = tuple[bytes, int, int]


class _Backend(Protocol):
    name: str

    def crypt_into(self, encrypt: bool, first_sector: int, src: Buffer, dst: Buffer) -> None:
        """Data units of the backend's size from ``first_sector`` on: one tweak per unit."""
        ...

    def crypt_pieces(self, encrypt: bool, pieces: Sequence[Piece], src: Buffer,
                     dst: Buffer) -> None:
        """One XTS call per piece, each with its own iv."""
        ...



# --- backend over cryptography ----------------------------------------------------------------
class _CryptographyBackend:
    """One ``Cipher`` per sector (XTS cannot be re-tweaked), the algorithm object reused."""

    name = "cryptography"

    def __init__(self, key: bytes, unit: int) -> None:
        self._algorithm = algorithms.AES(key)
        self._unit = unit

    def crypt_into(self, encrypt: bool, first_sector: int, src: Buffer, dst: Buffer) -> None:
        source, target = memoryview(src).cast("B"), memoryview(dst).cast("B")
        unit = self._unit
        for index in range(len(source) // unit):
            tweak = (first_sector + index).to_bytes(16, "little")
            cipher = Cipher(self._algorithm, modes.XTS(tweak))
            context = cipher.encryptor() if encrypt else cipher.decryptor()
            start = index * unit
            context.update_into(source[start : start + unit], target[start : start + unit])

    def crypt_pieces(self, encrypt: bool, pieces: Sequence[Piece], src: Buffer,
                     dst: Buffer) -> None:
        source, target = memoryview(src).cast("B"), memoryview(dst).cast("B")
        for iv, start, length in pieces:
            cipher = Cipher(self._algorithm, modes.XTS(iv))
            context = cipher.encryptor() if encrypt else cipher.decryptor()
            context.update_into(source[start : start + length], target[start : start + length])


# --- backend over libcrypto EVP ---------------------------------------------------------------
class _Libcrypto:
    """The few EVP entry points used, bound once. Hot-path functions keep no ``argtypes``: all
    their arguments are passed as ready ctypes objects or small ints, which skips conversion.

    The two hot-path functions (re-tweak and update, called once each per sector) are bound
    through ``PyDLL`` so that they keep the GIL. A ``CDLL`` call releases and re-takes the GIL;
    each call lasts about a microsecond, and with the NBD server's worker threads all wanting
    the GIL, every release became a hand-off to another thread (futex wake-ups, context
    switches): measured 0.3 GB/s with four threads against 1.7 GB/s with the GIL kept, whose
    speed does not depend on the thread count. Work that takes longer (``pwrite``, ``recv``,
    hashing a whole sector run) still releases the GIL, and that is where the other core helps.
    """

    def __init__(self, lib: ctypes.CDLL, hot: ctypes.PyDLL) -> None:
        self.ctx_new = lib["EVP_CIPHER_CTX_new"]
        self.ctx_new.restype = ctypes.c_void_p
        self.ctx_new.argtypes = []
        self.ctx_free = lib["EVP_CIPHER_CTX_free"]
        self.ctx_free.restype = None
        self.ctx_free.argtypes = [ctypes.c_void_p]
        self.fetch = lib["EVP_CIPHER_fetch"]
        self.fetch.restype = ctypes.c_void_p
        self.fetch.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        self.init = hot["EVP_CipherInit_ex"]
        self.update = hot["EVP_CipherUpdate"]
        # For long runs (whole-unit pieces of format 2): tens of microseconds of AES, during
        # which other threads may run Python; one GIL hand-off per run is cheap.
        self.update_long = lib["EVP_CipherUpdate"]
        cipher = self.fetch(None, b"AES-256-XTS", None)
        if not cipher:
            raise OSError("libcrypto has no AES-256-XTS")
        self.xts = ctypes.c_void_p(cipher)


@functools.cache
def _libcrypto() -> _Libcrypto | None:
    """The system OpenSSL 3 libcrypto, or None. Only OpenSSL 3 is accepted: its ABI for the
    functions above is stable, and older versions had different XTS key checks."""
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    try:
        lib = ctypes.CDLL(name)
        version = lib["OpenSSL_version_num"]
        version.restype = ctypes.c_ulong
        version.argtypes = []
        if version() < 0x30000000:
            return None
        # The same library again (dlopen returns the loaded one), for calls that keep the GIL.
        return _Libcrypto(lib, ctypes.PyDLL(name))
    except (OSError, AttributeError):
        return None


@functools.cache
def _iv_layout(count: int) -> struct.Struct:
    # Q = the sector number little-endian, 8x = the zero high half of the 16-byte tweak.
    return struct.Struct("<" + "Q8x" * count)


def _nbytes(buf: Buffer) -> int:
    """Bytes in ``buf``, without making a memoryview of a bytes or bytearray."""
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


def _address(buf: Buffer, writable: bool) -> tuple[int, object]:
    """The C address of ``buf`` and an object to keep alive while it is used."""
    if isinstance(buf, bytes) and not writable:
        # A bytes object is passed to C as a pointer to its own storage: no copy.
        pointer = ctypes.c_char_p(buf)
        # The char* the c_char_p holds, read in place: half the cost of ctypes.cast.
        address = ctypes.c_void_p.from_buffer(pointer).value
        return int(address or 0), (buf, pointer)
    view = memoryview(buf)
    if view.readonly:
        if writable:
            raise SectorCipherError("the output buffer of the sector cipher is read-only")
        whole = view.obj
        if isinstance(whole, bytes) and view.nbytes == len(whole) and view.c_contiguous:
            # A view of a whole bytes object (what a drive layer passes down): its storage,
            # not a copy (a copy of 1 MiB per call measured 6% of a write's GIL time).
            return _address(whole, writable=False)
        copy = bytes(view)
        return _address(copy, writable=False)
    first = ctypes.c_char.from_buffer(view)  # its first byte: no array type to look up
    return ctypes.addressof(first), (view, first)


def _native_crypt_units() -> Callable[[int, int, int, Buffer, bytearray | memoryview], bool] | None:
    """The C loop over data units (setup.py), or None where the extension was not built; the
    ctypes loop below then does the same, more slowly. ``_evp_agrees`` checks whichever is
    used against ``cryptography`` before the EVP backend is trusted."""
    try:
        from sealbox.storage._native import crypt_units
    except ImportError:
        return None
    return crypt_units


_CRYPT_UNITS = _native_crypt_units()


class _EvpContexts:
    """Per-thread EVP state: an EVP context is not thread-safe, and sharing one would need a
    lock on the hot path. Freed (OpenSSL cleanses the key schedule) when the thread or the
    cipher lets go of it; a call in progress keeps its own reference, so never a use-after-free.
    """

    def __init__(self, lib: _Libcrypto, key: bytes) -> None:
        self._lib = lib
        self.tweaks = (ctypes.c_char * (16 * _BATCH))()
        self.tweak_bytes = memoryview(self.tweaks).cast("B")
        self.first_tweak = ctypes.c_void_p(ctypes.addressof(self.tweaks))
        # One pointer per tweak slot, for 4 KiB units only (format 1), made on first use:
        # short-lived threads (the metadata store's mirror helpers, the engine's map-ahead
        # helper) create contexts often, and 256 ctypes objects each were most of the cost.
        self._tweak_ptrs: list[ctypes.c_void_p] | None = None
        self.out_len = ctypes.c_int()
        self.out_len_ref = ctypes.byref(self.out_len)
        self.src_ptr, self.dst_ptr = ctypes.c_void_p(), ctypes.c_void_p()
        self.contexts: list[ctypes.c_void_p] = []
        for encrypt in (0, 1):
            context = ctypes.c_void_p(lib.ctx_new())
            self.contexts.append(context)  # appended first, so __del__ frees it on failure
            if not context.value or lib.init(context, lib.xts, None, key, None, encrypt) != 1:
                raise SectorCipherError("the sector cipher could not be initialised")

    @property
    def tweak_ptrs(self) -> list[ctypes.c_void_p]:
        if self._tweak_ptrs is None:
            base = ctypes.addressof(self.tweaks)
            self._tweak_ptrs = [ctypes.c_void_p(base + 16 * i) for i in range(_BATCH)]
        return self._tweak_ptrs

    def __del__(self) -> None:
        for context in self.contexts:
            if context.value:
                self._lib.ctx_free(context)
        self.contexts = []


class _EvpBackend:
    name = "evp"

    def __init__(self, lib: _Libcrypto, key: bytes, unit: int) -> None:
        self._lib = lib
        self._key = key
        self._unit = unit
        self._local = threading.local()

    def _contexts(self) -> _EvpContexts:
        state: _EvpContexts | None = getattr(self._local, "state", None)
        if state is None:
            state = _EvpContexts(self._lib, self._key)
            self._local.state = state
        return state

    def crypt_into(self, encrypt: bool, first_sector: int, src: Buffer, dst: Buffer) -> None:
        state = self._contexts()
        if _CRYPT_UNITS is not None:  # the whole loop in C (sealbox/storage/_native.c)
            if isinstance(dst, bytes) or (isinstance(dst, memoryview) and dst.readonly):
                raise SectorCipherError("the output buffer of the sector cipher is read-only")
            address = state.contexts[1 if encrypt else 0].value or 0
            if not _CRYPT_UNITS(address, first_sector, self._unit, src, dst):
                raise SectorCipherError("the sector cipher failed")
            return
        src_address, keep_src = _address(src, writable=False)
        dst_address, keep_dst = _address(dst, writable=True)
        context = state.contexts[1 if encrypt else 0]
        unit = self._unit
        total = memoryview(src).nbytes // unit
        for done in range(0, total, _BATCH):
            count = min(_BATCH, total - done)
            first = first_sector + done
            _iv_layout(count).pack_into(state.tweaks, 0, *range(first, first + count))
            offset = done * unit
            self._run(state, context, count, src_address + offset, dst_address + offset)
        del keep_src, keep_dst

    def crypt_pieces(self, encrypt: bool, pieces: Sequence[Piece], src: Buffer,
                     dst: Buffer) -> None:
        state = self._contexts()
        src_address, keep_src = _address(src, writable=False)
        dst_address, keep_dst = _address(dst, writable=True)
        context = state.contexts[1 if encrypt else 0]
        lib, out_len = self._lib, state.out_len_ref
        src_ptr, dst_ptr, tweak = state.src_ptr, state.dst_ptr, state.first_tweak
        ok = 1
        for iv, start, length in pieces:
            state.tweak_bytes[0:16] = iv  # no GIL release, unlike ctypes.memmove
            ok &= lib.init(context, None, None, None, tweak, -1)
            src_ptr.value, dst_ptr.value = src_address + start, dst_address + start
            update = lib.update_long if length >= _LONG_RUN else lib.update
            ok &= update(context, dst_ptr, out_len, src_ptr, length)
        del keep_src, keep_dst
        if ok != 1:
            raise SectorCipherError("the sector cipher failed")

    def _run(
        self, state: _EvpContexts, context: ctypes.c_void_p, count: int, src: int, dst: int
    ) -> None:
        init, update, out_len, unit = (
            self._lib.init,
            self._lib.update,
            state.out_len_ref,
            self._unit,
        )
        # Two reusable pointer objects: setting .value is cheaper than building new ones.
        src_ptr, dst_ptr = state.src_ptr, state.dst_ptr
        ok = 1
        for tweak in state.tweak_ptrs[:count]:
            # key NULL keeps the key schedule; only the tweak changes (enc -1 = unchanged).
            ok &= init(context, None, None, None, tweak, -1)
            src_ptr.value, dst_ptr.value = src, dst
            ok &= update(context, dst_ptr, out_len, src_ptr, unit)
            src += unit
            dst += unit
        if ok != 1:
            raise SectorCipherError("the sector cipher failed")


# --- selection and the public type ------------------------------------------------------------
@functools.cache
def _evp_agrees() -> bool:
    """One random sector through both backends: the system library is used only if it gives
    exactly what ``cryptography`` gives."""
    lib = _libcrypto()
    if lib is None:
        return False
    key, data = os.urandom(XTS_KEY_SIZE), os.urandom(2 * SECTOR_SIZE)
    expected, got = bytearray(2 * len(data)), bytearray(2 * len(data))
    piece = [(os.urandom(16), 0, len(data))]  # one multi-sector run, as format 2 uses
    try:
        reference = _CryptographyBackend(key, SECTOR_SIZE)
        reference.crypt_into(True, 7, data, memoryview(expected)[: len(data)])
        reference.crypt_pieces(True, piece, data, memoryview(expected)[len(data) :])
        evp = _EvpBackend(lib, key, SECTOR_SIZE)
        evp.crypt_into(True, 7, data, memoryview(got)[: len(data)])
        evp.crypt_pieces(True, piece, data, memoryview(got)[len(data) :])
    except SectorCipherError:
        return False
    return hmac.compare_digest(bytes(expected), bytes(got))


def available_backends() -> tuple[str, ...]:
    """Backend names usable in this process, fastest first."""
    return ("evp", "cryptography") if _evp_agrees() else ("cryptography",)


def _make_backend(key: bytes, backend: str, unit: int) -> _Backend:
    if backend == "auto":
        backend = available_backends()[0]
    if backend == "cryptography":
        return _CryptographyBackend(key, unit)
    lib = _libcrypto()
    if backend == "evp" and lib is not None and _evp_agrees():
        return _EvpBackend(lib, key, unit)
    raise SectorCipherError(f"sector cipher backend {backend!r} is not available")


class SectorCipher:
    """AES-256-XTS over whole sectors with a 64-byte key (two distinct 32-byte halves).

    Thread-safe without a lock: each thread gets its own cipher contexts. ``first_sector`` is
    the absolute number of the first sector of ``data``. Raises :class:`SectorCipherError` for
    a bad key, data that is not whole sectors, or a sector number beyond 2**64. ``backend`` is
    "auto", "evp" or "cryptography".

    ``unit_size`` is the XTS data unit, ``sector_size`` (default: the unit) the granularity of
    requests; the data unit sequence number (the tweak) of sector ``s`` is
    ``s // (unit_size // sector_size)``. Drive format 1 uses 4096-byte units (one per sector),
    format 2 uses 1 MiB units over 4096-byte sectors (see the module docstring); other unit
    sizes exist for the IEEE 1619 known-answer vectors.
    """

    def __init__(self, key: Secret, *, backend: str = "auto", unit_size: int = SECTOR_SIZE,
                 sector_size: int | None = None) -> None:
        if unit_size % 16 or not 16 <= unit_size <= _MAX_UNIT:
            raise SectorCipherError("the XTS data unit must be 16 bytes to 16 MiB, whole blocks")
        sector = unit_size if sector_size is None else sector_size
        if sector % 16 or sector <= 0 or unit_size % sector:
            raise SectorCipherError("the XTS data unit must be whole sectors of whole blocks")
        self._unit = unit_size
        self._sector = sector
        self._sectors_per_unit = unit_size // sector
        raw = key.reveal()
        if len(raw) != XTS_KEY_SIZE:
            raise SectorCipherError("the sector key must be 64 bytes")
        # IEEE 1619 and FIPS require distinct halves; equal halves weaken XTS to XEX-with-key-reuse.
        if hmac.compare_digest(raw[:32], raw[32:]):
            raise SectorCipherError("the two halves of the sector key must differ")
        self._backend: _Backend | None = _make_backend(raw, backend, unit_size)
        self._tweaks = UnitTweaks(raw[32:]) if self._sectors_per_unit > 1 else None

    @property
    def backend(self) -> str:
        return self._live().name

    def encrypt(self, first_sector: int, data: Buffer) -> bytes:
        out = bytearray(memoryview(data).nbytes)
        self.encrypt_into(first_sector, data, out)
        return bytes(out)

    def decrypt(self, first_sector: int, data: Buffer) -> bytes:
        out = bytearray(memoryview(data).nbytes)
        self.decrypt_into(first_sector, data, out)
        return bytes(out)

    def encrypt_into(self, first_sector: int, src: Buffer, dst: Buffer) -> None:
        """Encrypt ``src`` into ``dst`` (same length; ``dst`` may be ``src`` for in place)."""
        self._crypt(True, first_sector, src, dst)

    def decrypt_into(self, first_sector: int, src: Buffer, dst: Buffer) -> None:
        self._crypt(False, first_sector, src, dst)

    def close(self) -> None:
        """Drop the key schedules. Python cannot wipe ``bytes``; OpenSSL cleanses its own."""
        self._backend = None

    def _live(self) -> _Backend:
        if self._backend is None:
            raise SectorCipherError("the sector cipher is closed")
        return self._backend

    def _crypt(self, encrypt: bool, first_sector: int, src: Buffer, dst: Buffer) -> None:
        backend = self._live()
        size = _nbytes(src)
        if size % self._sector or _nbytes(dst) != size:
            raise SectorCipherError("sector cipher data must be whole sectors")
        if first_sector < 0 or first_sector + size // self._sector > _MAX_SECTOR:
            raise SectorCipherError("sector number out of range")
        if not size:
            return
        if self._tweaks is None:
            backend.crypt_into(encrypt, first_sector, src, dst)
        else:
            backend.crypt_pieces(encrypt, self._pieces(first_sector, size), src, dst)

    def _pieces(self, first_sector: int, size: int) -> list[Piece]:
        """The request cut at data-unit boundaries, each piece with its starting iv."""
        assert self._tweaks is not None
        per_unit, sector_size = self._sectors_per_unit, self._sector
        blocks_per_sector = sector_size // 16
        count = size // sector_size
        unit, index = divmod(first_sector, per_unit)
        if index + count <= per_unit:  # the usual case: one run inside one unit
            return [(self._tweaks.start(unit, index * blocks_per_sector), 0, size)]
        pieces = []
        sector, end = first_sector, first_sector + count
        while sector < end:
            unit, index = divmod(sector, per_unit)
            count = min(per_unit - index, end - sector)
            iv = self._tweaks.start(unit, index * blocks_per_sector)
            pieces.append((iv, (sector - first_sector) * sector_size, count * sector_size))
            sector += count
        return pieces
