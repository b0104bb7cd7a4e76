"""An emulated self-encrypting drive (SED), in the manner of a TCG Opal drive.

A :class:`SelfEncryptingDrive` wraps a raw :class:`~sealbox.storage.blockdev.BlockDevice`
(the *media*) and is itself a ``BlockDevice``. Everything written through it is encrypted
with AES-256-XTS under its own media encryption key (MEK, 64 random bytes), tweak = the
sector number *on the media* (``SectorCipher``, one 4 KiB data unit per sector). The MEK never
leaves the object: it is stored only wrapped (RFC 5649) by a KEK derived (HKDF-SHA256, a
per-drive salt) from the authentication key (AK) - or, while locking is disabled, from the
public MSID, so the drive encrypts everything but anyone can read it, as a real Opal drive
does out of the box. Layout and threat model: ``docs/sed.md``.

Life cycle: :meth:`format` (new MEK, locking off) - :meth:`enable_locking` (MEK rewrapped
under the AK) - :meth:`open` is a power cycle: with locking enabled the drive comes up locked
and serves no I/O (:class:`SedLocked`) until :meth:`unlock` with the AK. Every AK check is a
constant-time verifier comparison (``sed_keys.ak_matches``); wrong AKs are counted, and after
``max_attempts`` of them every further authentication is refused with :class:`SedLockedOut`,
*even with the right AK*, until the next power cycle (a new :meth:`open`). The counter lives
in memory only, as the issue asks; a success resets it. The cluster must therefore never
guess: it fetches the one AK it recorded for the drive and tries it once.

Metadata changes are crash-safe: each writes a whole copy with ``sequence + 1`` into the copy
that does not hold the current state, then flushes. Changes that retire a wrapped MEK
(enabling locking, changing or removing the AK, secure erase) write both copies, so no copy
still holds the MEK wrapped under a key that should no longer open it. :meth:`open` re-writes
a copy that lags behind the current one (left by a crash between the two writes).

Concurrency: ``read``/``write``/``flush`` take no lock; key and metadata operations serialise
on a lock of their own. ``lock`` and ``secure_erase`` must not race with I/O in flight.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import ParamSpec, TypeVar, cast

from sealbox.errors import SealboxError
from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE, BlockDevice
from sealbox.storage.crypto import SectorCipher
from sealbox.storage.sector_buffers import Staging, zero_sectors
from sealbox.storage.sed_errors import (
    SedAuthenticationFailed,
    SedError,
    SedIOError,
    SedLocked,
    SedLockedOut,
    SedMetadataCorrupt,
    SedStateError,
)
from sealbox.storage.sed_format import (
    DATA_OFFSET_SECTORS,
    LARGE_UNIT_SECTORS,
    METADATA_COPIES,
    Locking,
    SedMetadata,
    choose_current,
    copy_index,
    pack_metadata,
    parse_metadata,
)
from sealbox.storage.sed_keys import (
    MSID,
    ak_matches,
    check_new_ak,
    new_mek,
    new_salt,
    unwrap_mek,
    wrap_mek,
)

DEFAULT_MAX_ATTEMPTS = 5
_P = ParamSpec("_P")
_R = TypeVar("_R")
_ZERO_SECTOR = bytes(SECTOR_SIZE)
# This thread's ciphertext buffer for writes, page-aligned (sector_buffers.py says why).
_stage = Staging()


class SelfEncryptingDrive:
    """An emulated Opal-style drive over ``media``. Build with :meth:`format` or :meth:`open`;
    the constructor is not public API."""

    def __init__(self, media: BlockDevice, meta: SedMetadata, max_attempts: int) -> None:
        if max_attempts < 1:
            raise SedStateError("max_attempts must be at least 1")
        self._media = media
        self._meta = meta
        self._max_attempts = max_attempts
        self._failures = 0
        self._lock = threading.Lock()
        self._cipher: SectorCipher | None = None

    # --- power: format and open -----------------------------------------------------------
    @classmethod
    def format(cls, media: BlockDevice, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
               media_id: uuid.UUID | None = None, large_units: bool = True
               ) -> SelfEncryptingDrive:
        """Make ``media`` a new SED: new MEK, locking off, every media sector but the first
        eight for data. Whatever the media held reads as garbage afterwards. Raises
        :class:`SedError` if the media is too small, :class:`SedIOError` on I/O failure."""
        count = media.sector_count - DATA_OFFSET_SECTORS
        if count <= 0:
            raise SedError("the media is too small for a self-encrypting drive")
        mek = new_mek()
        meta = _wrapped(
            SedMetadata(media_id or uuid.uuid4(), 0, DATA_OFFSET_SECTORS, count, Locking.OFF, 1,
                        bytes(32), bytes(72), bytes(32),
                        LARGE_UNIT_SECTORS if large_units else 1),
            MSID, mek, Locking.OFF)
        drive = cls(media, meta, max_attempts)
        _io(media.write, 0, bytes(DATA_OFFSET_SECTORS * SECTOR_SIZE))  # no stale metadata
        drive._commit_both(meta)
        drive._install(mek)
        return drive

    @classmethod
    def open(cls, media: BlockDevice, max_attempts: int = DEFAULT_MAX_ATTEMPTS
             ) -> SelfEncryptingDrive:
        """Power the drive on: locked if locking is enabled, else unlocked with the MSID.
        The attempt counter starts at zero. Raises :class:`SedMetadataCorrupt`,
        :class:`SedFormatUnsupported` or :class:`SedIOError`."""
        if media.sector_count < DATA_OFFSET_SECTORS + 1:
            raise SedMetadataCorrupt("the media is too small to be a self-encrypting drive")
        raw = _io(media.read, 0, METADATA_COPIES)
        copies = [raw[i * SECTOR_SIZE : (i + 1) * SECTOR_SIZE] for i in range(METADATA_COPIES)]
        meta = choose_current(copies)
        if meta.data_offset + meta.sector_count > media.sector_count:
            raise SedMetadataCorrupt("the media is smaller than the drive's data area")
        drive = cls(media, meta, max_attempts)
        drive._heal(copies)
        if meta.locking is Locking.OFF:
            if not ak_matches(MSID, meta.media_id.bytes, meta.salt, meta.verifier):
                raise SedMetadataCorrupt("the drive metadata does not open with the MSID")
            drive._install(unwrap_mek(MSID, meta.salt, meta.wrapped_mek))
        return drive

    def _heal(self, copies: list[bytes]) -> None:
        """After a crash between the two writes of a two-copy change, the other copy still
        holds the previous state - perhaps the MEK wrapped under a retired key. Rewrite it."""
        other = copies[1 - copy_index(self._meta.sequence)]
        try:
            previous: SedMetadata | None = parse_metadata(other)
        except SedMetadataCorrupt:
            previous = None  # torn or damaged: rewrite it so both copies are intact again
        if previous is None or replace(previous, sequence=self._meta.sequence) != self._meta:
            self._commit(self._meta)

    # --- state ----------------------------------------------------------------------------
    @property
    def media_id(self) -> uuid.UUID:
        return self._meta.media_id

    @property
    def locking_enabled(self) -> bool:
        return self._meta.locking is Locking.ON

    @property
    def locked(self) -> bool:
        """True while the drive serves no I/O (locking enabled, not unlocked since power-on)."""
        return self._cipher is None

    @property
    def mek_generation(self) -> int:
        """1 after :meth:`format`, one more after every :meth:`secure_erase`."""
        return self._meta.mek_generation

    @property
    def attempts_remaining(self) -> int:
        """Wrong AKs still accepted before lock-out; 0 means locked out until power cycle."""
        return max(0, self._max_attempts - self._failures)

    @property
    def metadata(self) -> SedMetadata:
        """The current metadata (nothing secret in it)."""
        return self._meta

    # --- authentication -------------------------------------------------------------------
    def unlock(self, ak: Secret) -> None:
        """Unlock with the AK (a no-op check if locking is disabled). Raises
        :class:`SedAuthenticationFailed` (counted) or :class:`SedLockedOut`."""
        with self._lock:
            if self._meta.locking is Locking.OFF:
                return
            self._install(self._authenticate(ak))

    def lock(self) -> None:
        """Forget the MEK (only with locking enabled); the attempt counter is kept."""
        with self._lock:
            if self._meta.locking is Locking.ON:
                self._forget()

    def power_off(self) -> None:
        """Forget the MEK whatever the locking state (the object serves no more I/O)."""
        with self._lock:
            self._forget()

    def enable_locking(self, ak: Secret) -> None:
        """Wrap the MEK under ``ak`` instead of the MSID (both copies). The drive stays
        unlocked until the next power cycle. Raises :class:`SedStateError` if locking is
        already enabled or ``ak`` is not 16 to 1024 bytes."""
        with self._lock:
            if self._meta.locking is Locking.ON:
                raise SedStateError("locking is already enabled; use change_ak")
            check_new_ak(ak)
            # The MSID is public: nothing to count or lock out (open() already checked it).
            mek = unwrap_mek(MSID, self._meta.salt, self._meta.wrapped_mek)
            self._commit_both(_wrapped(self._meta, ak, mek, Locking.ON))

    def change_ak(self, old: Secret, new: Secret) -> None:
        """Rewrap the MEK under ``new`` after authenticating with ``old`` (counted like an
        unlock); data is untouched and the lock state does not change."""
        with self._lock:
            if self._meta.locking is Locking.OFF:
                raise SedStateError("locking is not enabled; use enable_locking")
            check_new_ak(new)
            mek = self._authenticate(old)
            self._commit_both(_wrapped(self._meta, new, mek, Locking.ON))

    def disable_locking(self, ak: Secret) -> None:
        """Authenticate with ``ak``, then wrap the MEK under the MSID again and unlock: the
        drive reads and writes without an AK from now on. Data is untouched."""
        with self._lock:
            if self._meta.locking is Locking.OFF:
                return
            mek = self._authenticate(ak)
            self._commit_both(_wrapped(self._meta, MSID, mek, Locking.OFF))
            self._install(mek)

    def secure_erase(self) -> None:
        """Cryptographic erase: a new MEK, locking off, both metadata copies rewritten, so
        the old wrapped MEK is gone from the media and every sector written before reads as
        garbage. Needs no AK, like an Opal PSID revert: destroying data needs no secret;
        works when locked out, and clears the attempt counter (there is no AK left to guess).
        Interrupted before it returns, the old wrapped MEK may survive in one copy: repeat."""
        with self._lock:
            mek = new_mek()
            # A new MEK makes every old sector garbage anyway: move to the 1 MiB data unit.
            meta = replace(self._meta, mek_generation=self._meta.mek_generation + 1,
                           xts_unit_sectors=LARGE_UNIT_SECTORS)
            self._commit_both(_wrapped(meta, MSID, mek, Locking.OFF))
            self._install(mek)
            self._failures = 0  # the AK that was being guessed no longer exists

    def _authenticate(self, ak: Secret) -> Secret:
        """The MEK, if ``ak`` is the current one. Constant-time check; failures counted."""
        if self._failures >= self._max_attempts:
            raise SedLockedOut(
                f"self-encrypting drive {self.media_id} refuses authentication after "
                f"{self._max_attempts} wrong keys until it is power-cycled")
        meta = self._meta
        if not ak_matches(ak, meta.media_id.bytes, meta.salt, meta.verifier):
            self._failures += 1
            raise SedAuthenticationFailed(
                f"wrong authentication key for self-encrypting drive {self.media_id} "
                f"({self.attempts_remaining} attempts left before lock-out)")
        self._failures = 0
        return unwrap_mek(ak, meta.salt, meta.wrapped_mek)

    def _install(self, mek: Secret) -> None:
        cipher = SectorCipher(mek, unit_size=self._meta.xts_unit_sectors * SECTOR_SIZE,
                              sector_size=SECTOR_SIZE)
        self._forget()
        self._cipher = cipher

    def _forget(self) -> None:
        if self._cipher is not None:
            self._cipher.close()
        self._cipher = None

    # --- metadata writes ------------------------------------------------------------------
    def _commit(self, meta: SedMetadata) -> None:
        """Write ``meta`` as the next sequence into the copy not holding the current state,
        then flush: a torn write damages only that copy."""
        new = replace(meta, sequence=self._meta.sequence + 1)
        _io(self._media.write, copy_index(new.sequence), pack_metadata(new))
        _io(self._media.flush)
        self._meta = new

    def _commit_both(self, meta: SedMetadata) -> None:
        self._commit(meta)
        self._commit(meta)

    # --- BlockDevice ----------------------------------------------------------------------
    @property
    def sector_count(self) -> int:
        return self._meta.sector_count

    def _check(self, sector: int, count: int) -> SectorCipher:
        if count <= 0 or sector < 0 or sector + count > self._meta.sector_count:
            raise SedError(f"sectors {sector}+{count} are outside the drive")
        cipher = self._cipher
        if cipher is None:
            raise SedLocked(f"self-encrypting drive {self.media_id} is locked")
        return cipher

    def read(self, sector: int, count: int) -> bytes:
        """Decrypted sectors. A media sector that is all zeros (never written since the
        media was made) reads as zeros, as a fresh disk would; see ``docs/sed.md``."""
        buf = bytearray(count * SECTOR_SIZE)
        self.read_into(sector, memoryview(buf))
        return bytes(buf)

    def read_into(self, sector: int, view: memoryview) -> None:
        """:meth:`read` into the writable ``view`` (whole sectors): the media fills it and
        it is decrypted in place, so a stacked drive copies nothing."""
        if len(view) % SECTOR_SIZE:
            raise SedError("reads must be whole 4096-byte sectors")
        count = len(view) // SECTOR_SIZE
        cipher = self._check(sector, count)
        first = self._meta.data_offset + sector
        read_into = getattr(self._media, "read_into", None)
        if read_into is not None:
            _io(read_into, first, view)
        else:
            view[:] = _io(self._media.read, first, count)
        unwritten = zero_sectors(view, count)
        if len(unwritten) < count:
            cipher.decrypt_into(first, view, view)
            for index in unwritten:
                view[index * SECTOR_SIZE : (index + 1) * SECTOR_SIZE] = _ZERO_SECTOR

    def write(self, sector: int, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        if size % SECTOR_SIZE:
            raise SedError("writes must be whole 4096-byte sectors")
        cipher = self._check(sector, size // SECTOR_SIZE)
        first = self._meta.data_offset + sector
        # Ciphertext through this thread's buffer, a chunk at a time: no allocation per write.
        stage = _stage.get()
        for start in range(0, size, len(stage)):
            piece = memoryview(data)[start : start + len(stage)]
            out = stage[: len(piece)]
            cipher.encrypt_into(first + start // SECTOR_SIZE, piece, out)
            # Every media here writes any buffer (pwrite); BlockDevice names ``bytes``.
            _io(self._media.write, first + start // SECTOR_SIZE, cast(bytes, out))

    def flush(self) -> None:
        if self._cipher is None:
            raise SedLocked(f"self-encrypting drive {self.media_id} is locked")
        _io(self._media.flush)


def _wrapped(meta: SedMetadata, ak: Secret, mek: Secret, locking: Locking) -> SedMetadata:
    """``meta`` with the MEK wrapped under ``ak`` with a fresh salt, and its verifier."""
    salt = new_salt()
    wrapped, verifier = wrap_mek(ak, mek, meta.media_id.bytes, salt)
    return replace(meta, locking=locking, salt=salt, wrapped_mek=wrapped, verifier=verifier)


def _io(call: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Media OS errors become :class:`SedIOError`; sealbox errors of the media pass as is."""
    try:
        return call(*args, **kwargs)
    except SealboxError:
        raise
    except OSError as error:
        raise SedIOError(f"media I/O failed: {error.strerror or 'error'}") from error
