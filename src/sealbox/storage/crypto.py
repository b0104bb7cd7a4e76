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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hmac
import os
import struct
import threading
from typing import Final, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealbox.errors import SealboxError
from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE

XTS_KEY_SIZE: Final = 64
_BATCH: Final = 256  # sectors per tweak buffer refill: 1 MiB of data
_MAX_SECTOR: Final = 1 << 64  # the tweak carries a 64-bit sector number
_MAX_UNIT: Final = 1 << 24  # the largest XTS data unit OpenSSL accepts (2**20 blocks)

Buffer = bytes | bytearray | memoryview


class SectorCipherError(SealboxError):
    """The sector cipher was misused (bad key, misaligned data) or its backend failed."""

    element_name = "xSectorCipherFailed"


class _Backend(Protocol):
    name: str

    def crypt_into(self, encrypt: bool, first_sector: int, src: Buffer, dst: Buffer) -> None: ...


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


# --- backend over libcrypto EVP ---------------------------------------------------------------
class _Libcrypto:
    """The few EVP entry points used, bound once. Hot-path functions keep no ``argtypes``: all
    their arguments are passed as ready ctypes objects or small ints, which skips conversion."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.ctx_new = lib["EVP_CIPHER_CTX_new"]
        self.ctx_new.restype = ctypes.c_void_p
        self.ctx_new.argtypes = []
        self.ctx_free = lib["EVP_CIPHER_CTX_free"]
        self.ctx_free.restype = None
        self.ctx_free.argtypes = [ctypes.c_void_p]
        self.fetch = lib["EVP_CIPHER_fetch"]
        self.fetch.restype = ctypes.c_void_p
        self.fetch.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        self.init = lib["EVP_CipherInit_ex"]
        self.update = lib["EVP_CipherUpdate"]
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
        return _Libcrypto(lib)
    except (OSError, AttributeError):
        return None


@functools.cache
def _iv_layout(count: int) -> struct.Struct:
    # Q = the sector number little-endian, 8x = the zero high half of the 16-byte tweak.
    return struct.Struct("<" + "Q8x" * count)


def _address(buf: Buffer, writable: bool) -> tuple[int, object]:
    """The C address of ``buf`` and an object to keep alive while it is used."""
    if isinstance(buf, bytes) and not writable:
        # A bytes object is passed to C as a pointer to its own storage: no copy.
        pointer = ctypes.c_char_p(buf)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        return int(address or 0), (buf, pointer)
    view = memoryview(buf)
    if view.readonly:
        if writable:
            raise SectorCipherError("the output buffer of the sector cipher is read-only")
        copy = bytes(view)
        return _address(copy, writable=False)
    array = (ctypes.c_char * view.nbytes).from_buffer(view)
    return ctypes.addressof(array), (view, array)


class _EvpContexts:
    """Per-thread EVP state: an EVP context is not thread-safe, and sharing one would need a
    lock on the hot path. Freed (OpenSSL cleanses the key schedule) when the thread or the
    cipher lets go of it; a call in progress keeps its own reference, so never a use-after-free.
    """

    def __init__(self, lib: _Libcrypto, key: bytes) -> None:
        self._lib = lib
        self.tweaks = (ctypes.c_char * (16 * _BATCH))()
        base = ctypes.addressof(self.tweaks)
        self.tweak_ptrs = [ctypes.c_void_p(base + 16 * i) for i in range(_BATCH)]
        self.out_len = ctypes.c_int()
        self.out_len_ref = ctypes.byref(self.out_len)
        self.src_ptr, self.dst_ptr = ctypes.c_void_p(), ctypes.c_void_p()
        self.contexts: list[ctypes.c_void_p] = []
        for encrypt in (0, 1):
            context = ctypes.c_void_p(lib.ctx_new())
            self.contexts.append(context)  # appended first, so __del__ frees it on failure
            if not context.value or lib.init(context, lib.xts, None, key, None, encrypt) != 1:
                raise SectorCipherError("the sector cipher could not be initialised")

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
    expected, got = bytearray(len(data)), bytearray(len(data))
    try:
        _CryptographyBackend(key, SECTOR_SIZE).crypt_into(True, 7, data, expected)
        _EvpBackend(lib, key, SECTOR_SIZE).crypt_into(True, 7, data, got)
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
    """AES-256-XTS over whole 4 KiB sectors with a 64-byte key (two distinct 32-byte halves).

    Thread-safe without a lock: each thread gets its own cipher contexts. ``first_sector`` is
    the absolute sector number of the first sector of ``data`` (its tweak). Raises
    :class:`SectorCipherError` for a bad key, data that is not whole sectors, or a sector number
    beyond 2**64. ``backend`` is "auto", "evp" or "cryptography"; ``unit_size`` (the XTS data
    unit) is 4096 for drives, other sizes exist for the IEEE 1619 known-answer vectors.
    """

    def __init__(self, key: Secret, *, backend: str = "auto", unit_size: int = SECTOR_SIZE) -> None:
        if unit_size % 16 or not 16 <= unit_size <= _MAX_UNIT:
            raise SectorCipherError("the XTS data unit must be 16 bytes to 16 MiB, whole blocks")
        self._unit = unit_size
        raw = key.reveal()
        if len(raw) != XTS_KEY_SIZE:
            raise SectorCipherError("the sector key must be 64 bytes")
        # IEEE 1619 and FIPS require distinct halves; equal halves weaken XTS to XEX-with-key-reuse.
        if hmac.compare_digest(raw[:32], raw[32:]):
            raise SectorCipherError("the two halves of the sector key must differ")
        self._backend: _Backend | None = _make_backend(raw, backend, unit_size)

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
        size = memoryview(src).nbytes
        if size % self._unit or memoryview(dst).nbytes != size:
            raise SectorCipherError("sector cipher data must be whole sectors")
        if first_sector < 0 or first_sector + size // self._unit > _MAX_SECTOR:
            raise SectorCipherError("sector number out of range")
        backend.crypt_into(encrypt, first_sector, src, dst)
