"""A drive: a file or block device with a sealbox header and a data area of 4 KiB sectors.

Layout (byte by byte in ``docs/storage-format.md``): sectors 0 and 1 hold two copies of the
header, then reserved sectors; the data area starts at the header's ``data_offset``: sector 8,
or 248 on a self-encrypting drive (``disk.drive_data_offset`` says why). The data area is a
:class:`~sealbox.storage.blockdev.BlockDevice`; with software encryption it is AES-256-XTS
encrypted with the drive's DEK: one XTS data unit per 1 MiB of the data area (format version
2, every drive encrypted by this sealbox), or per 4 KiB sector (version 1, drives encrypted by
an earlier one, kept as they are until they get a new DEK). See crypto.py for why.

Concurrency: ``read``/``write``/``flush`` take no lock (positioned I/O, a thread-safe cipher),
so many threads may do I/O at once. Key and header operations serialise on a lock of their own;
``lock``, ``crypto_erase`` and ``close`` must not race with I/O in flight (the caller quiesces).

Never-written sectors: a sector whose ciphertext is all zeros reads back as zeros, so a fresh
sparse drive reads as zeros, as a plain disk would. What this shows an attacker holding the
drive file: which sectors were never written, which the sparse file or zeroed disk already
shows. What it lets an attacker writing the file do: make a sector read as zeros rather than
as garbage; XTS offers no integrity anyway (old ciphertext can be replayed, bits flipped), so
nothing new is lost. Writes always encrypt, zeros included: skipping them would reveal which
sectors hold zeros. A genuine ciphertext sector is all zeros with probability 2**-32768.
"""

from __future__ import annotations

import hmac
import os
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from sealbox.errors import SealboxError
from sealbox.secrets import Secret
from sealbox.storage import drive_io
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.crypto import XTS_KEY_SIZE, SectorCipher
from sealbox.storage.drive_errors import (
    DriveError,
    DriveKeySlotError,
    DriveKeyUnavailable,
    DriveLocked,
    DriveTruncated,
)
from sealbox.storage.drive_keys import retire, stage, unlock_order
from sealbox.storage.drive_media import DriveMedia, FileMedia
from sealbox.storage.header import (
    DATA_OFFSET_SECTORS,
    HEADER_COPIES,
    LARGE_XTS_UNIT_SECTORS,
    DriveHeader,
    EncryptionMode,
    KeySlot,
    choose_current,
    copy_index,
    pack_header,
)
from sealbox.storage.keysource import KeySource
from sealbox.storage.keywrap import unwrap_dek, wrap_dek
from sealbox.storage.sector_buffers import Staging, aligned_buffer, zero_sectors

_ZERO_SECTOR = bytes(SECTOR_SIZE)
# Ciphertext of writes and plaintext of reads, a chunk at a time: one page-aligned buffer per
# thread (sector_buffers.py says why aligned). Distinct from the SED's: a write through a SED
# fills both at once.
_stage = Staging()
_STAGE_SECTORS = _stage.size // SECTOR_SIZE


class Drive:
    """An open drive. Create with :meth:`create`, open with :meth:`open`; close when done."""

    def __init__(self, path: str, media: DriveMedia, header: DriveHeader) -> None:
        self._path = path
        self._media = media
        self._header = header
        self._meta = threading.Lock()
        self._dek: Secret | None = None
        self._cipher: SectorCipher | None = None
        self._unlocked_with: str | None = None
        self._data_start = header.data_offset * SECTOR_SIZE

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, path: str | Path, size: int | None = None, *, drive_uuid: uuid.UUID | None = None
    ) -> Drive:
        """Format a new drive: a new sparse file of ``size`` bytes, or an existing block
        device (``size`` defaults to the whole device). Unencrypted until
        :meth:`enable_software_encryption`. Raises :class:`DriveError`."""
        name = os.fspath(path)
        is_device = Path(name).is_block_device()
        media = FileMedia(drive_io.open_drive(name, create=not is_device))
        try:
            cls._format_size(media, size, is_device)
            drive = cls.create_on(media, name, drive_uuid=drive_uuid)
            if not is_device:
                drive_io.sync_directory(os.path.dirname(os.path.abspath(name)))
        except BaseException:
            media.close()
            if not is_device:
                os.unlink(name)  # no half-formatted drive file is left behind
            raise
        return drive

    @classmethod
    def create_on(cls, media: DriveMedia, name: str, *, drive_uuid: uuid.UUID | None = None,
                  data_offset: int = DATA_OFFSET_SECTORS) -> Drive:
        """Format a drive over all of ``media`` (a self-encrypting drive's user area), its
        data area starting ``data_offset`` sectors in (at least 8: the header copies and the
        reserved sectors come first). The header records the offset, so every drive keeps
        the one it was formatted with."""
        total = media.size()
        if data_offset < DATA_OFFSET_SECTORS or total <= data_offset * SECTOR_SIZE:
            raise DriveError(f"a drive needs room for data after sector {data_offset}")
        header = DriveHeader(
            drive_uuid or uuid.uuid4(),
            0,
            data_offset,
            total // SECTOR_SIZE - data_offset,
            EncryptionMode.NONE,
        )
        drive = cls(name, media, header)
        for _ in range(HEADER_COPIES):  # both copies, so neither holds stale bytes
            drive._commit(header)
        return drive

    @staticmethod
    def _format_size(media: FileMedia, size: int | None, is_device: bool) -> int:
        available = media.size()
        wanted = available if size is None else size
        if size is None and not is_device:
            raise DriveError("a drive file needs a size")
        if wanted % SECTOR_SIZE or wanted <= DATA_OFFSET_SECTORS * SECTOR_SIZE:
            raise DriveError("a drive size must be a multiple of 4096 above 32 KiB")
        if is_device and wanted > available:
            raise DriveError("the drive size exceeds the block device")
        if not is_device:
            media.resize(wanted)
        return wanted

    @classmethod
    def open(cls, path: str | Path) -> Drive:
        """Open a formatted drive (locked, if encrypted). Raises :class:`DriveHeaderCorrupt`,
        :class:`DriveFormatUnsupported`, :class:`DriveTruncated` or :class:`DriveIOError`."""
        name = os.fspath(path)
        media = FileMedia(drive_io.open_drive(name, create=False))
        try:
            return cls.open_on(media, name)
        except BaseException:
            media.close()
            raise

    @classmethod
    def open_on(cls, media: DriveMedia, name: str) -> Drive:
        """Open the drive formatted on ``media``; the caller closes ``media`` on error."""
        size = media.size()
        if size < HEADER_COPIES * SECTOR_SIZE:
            raise DriveTruncated(f"{name} is too small to be a sealbox drive")
        copies = bytearray(HEADER_COPIES * SECTOR_SIZE)
        media.read_into(memoryview(copies), 0)
        header = choose_current(
            [bytes(copies[i * SECTOR_SIZE : (i + 1) * SECTOR_SIZE]) for i in range(HEADER_COPIES)]
        )
        if size < (header.data_offset + header.sector_count) * SECTOR_SIZE:
            raise DriveTruncated(f"{name} is smaller than its data area")
        return cls(name, media, header)

    def close(self) -> None:
        self.lock()
        self._media.close()

    def __enter__(self) -> Drive:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # --- state ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def uuid(self) -> uuid.UUID:
        return self._header.drive_uuid

    @property
    def media(self) -> DriveMedia:
        return self._media

    @property
    def header(self) -> DriveHeader:
        return self._header

    @property
    def encryption(self) -> EncryptionMode:
        return self._header.encryption

    @property
    def locked(self) -> bool:
        """True while an encrypted drive has no DEK in memory (it serves no I/O)."""
        return self.encryption is EncryptionMode.SOFTWARE and self._cipher is None

    @property
    def unlocked_with(self) -> str | None:
        """The master-key identifier whose slot unlocked the drive, if unlocked."""
        return self._unlocked_with

    def _commit(self, header: DriveHeader) -> None:
        """Write ``header`` as the next sequence into the copy not holding the current one,
        then fsync: a torn write damages only that copy and the current one stays intact."""
        new = replace(header, sequence=self._header.sequence + 1)
        self._media.write_all(pack_header(new), copy_index(new.sequence) * SECTOR_SIZE)
        self._media.sync_all()
        self._header = new

    def _commit_both(self, header: DriveHeader) -> None:
        """Write both copies, so no copy keeps what ``header`` removed (an old wrapped DEK)."""
        self._commit(header)
        self._commit(header)

    # --- keys -----------------------------------------------------------------------------
    def _install(self, dek: Secret, master_key_id: str) -> None:
        unit = self._header.xts_unit_sectors * SECTOR_SIZE
        cipher = SectorCipher(dek, unit_size=unit, sector_size=SECTOR_SIZE)
        if self._cipher is not None:
            self._cipher.close()
        self._dek, self._cipher, self._unlocked_with = dek, cipher, master_key_id

    def enable_software_encryption(self, master_key_id: str, master_key: Secret) -> None:
        """Generate a DEK, wrap it under ``master_key`` into slot 0 (generation 1) and unlock.
        Meant for a new or erased drive: data written before reads as garbage afterwards."""
        with self._meta:
            if self.encryption is not EncryptionMode.NONE:
                raise DriveKeySlotError("the drive is already encrypted")
            dek = _new_dek()
            slot = KeySlot(1, master_key_id, wrap_dek(master_key, dek))
            self._commit_both(
                replace(self._header, encryption=EncryptionMode.SOFTWARE, slots=(slot, None),
                        xts_unit_sectors=LARGE_XTS_UNIT_SECTORS)
            )
            self._install(dek, master_key_id)

    def unlock(self, keys: KeySource) -> str:
        """Unwrap the DEK from the newest slot whose master key ``keys`` can provide and
        returns that key's identifier. Raises :class:`DriveKeyUnavailable` if none can."""
        with self._meta:
            if self.encryption is EncryptionMode.NONE:
                return ""
            tried = []
            for slot in unlock_order(self._header.slots):
                tried.append(slot.master_key_id)
                try:
                    dek = unwrap_dek(keys.get(slot.master_key_id), slot.wrapped_dek)
                except SealboxError:
                    continue  # this key is gone, unreachable or wrong: try the older slot
                self._install(dek, slot.master_key_id)
                return slot.master_key_id
            raise DriveKeyUnavailable(
                f"drive {self.uuid}: no key slot opens with the available master keys "
                f"(slots wrapped by: {', '.join(tried) or 'none'})"
            )

    def lock(self) -> None:
        """Forget the DEK; the drive serves no I/O until unlocked again."""
        with self._meta:
            if self._cipher is not None:
                self._cipher.close()
            self._dek, self._cipher, self._unlocked_with = None, None, None

    def _unlocked_dek(self) -> tuple[Secret, str]:
        if self._dek is None or self._unlocked_with is None:
            raise DriveLocked(f"drive {self.uuid} is locked")
        return self._dek, self._unlocked_with

    def stage_rewrap(self, new_master_key_id: str, new_master_key: Secret) -> None:
        """Rekey step 3: the DEK wrapped by the new MK into the spare slot, next generation,
        fsynced before returning. The slot that unlocked the drive is left untouched."""
        with self._meta:
            dek, current = self._unlocked_dek()
            wrapped = wrap_dek(new_master_key, dek)
            slots = stage(self._header.slots, new_master_key_id, wrapped, current)
            if slots == self._header.slots:
                return  # already staged (key wrap is deterministic): no write, no fsync
            self._commit(replace(self._header, slots=slots))

    def retire_slot(self, master_key_id: str) -> None:
        """Rekey step 5: clear the slot wrapped by ``master_key_id`` (no-op if none) in both
        header copies. Refuses to clear the last slot (:class:`DriveKeySlotError`)."""
        with self._meta:
            slots = retire(self._header.slots, master_key_id)
            if slots != self._header.slots:
                self._commit_both(replace(self._header, slots=slots))
                if self._unlocked_with == master_key_id:
                    self._unlocked_with = next(s.master_key_id for s in slots if s is not None)

    def crypto_erase(self, master_key_id: str, master_key: Secret) -> None:
        """Destroy both key slots in both header copies and start over with a new DEK wrapped
        by ``master_key``: everything written before is unreadable once this returns."""
        with self._meta:
            if self.encryption is not EncryptionMode.SOFTWARE:
                raise DriveKeySlotError("only a software-encrypted drive can be crypto-erased")
            dek = _new_dek()
            slot = KeySlot(1, master_key_id, wrap_dek(master_key, dek))
            # A new DEK makes every old sector garbage anyway: the drive moves to the 1 MiB
            # XTS data unit (format version 2) if it had the 4 KiB one.
            self._commit_both(replace(self._header, slots=(slot, None),
                                      xts_unit_sectors=LARGE_XTS_UNIT_SECTORS))
            self._install(dek, master_key_id)

    # --- BlockDevice ----------------------------------------------------------------------
    @property
    def sector_count(self) -> int:
        return self._header.sector_count

    def _check(self, sector: int, count: int) -> SectorCipher | None:
        if count <= 0 or sector < 0 or sector + count > self._header.sector_count:
            raise DriveError(f"sectors {sector}+{count} are outside the data area")
        cipher = self._cipher
        if cipher is None and self.encryption is EncryptionMode.SOFTWARE:
            raise DriveLocked(f"drive {self.uuid} is locked")
        return cipher

    def read(self, sector: int, count: int) -> bytes:
        cipher = self._check(sector, count)
        offset = self._data_start + sector * SECTOR_SIZE
        if cipher is None:
            return self._media.read_at(count * SECTOR_SIZE, offset)
        # Ciphertext into this thread's buffer, decrypted in place, then one copy out: the
        # same single allocation per read as the plain path.
        size = count * SECTOR_SIZE
        view = _stage.get()[:size] if count <= _STAGE_SECTORS else aligned_buffer(size)
        self._read_into(cipher, sector, view, offset)
        return bytes(view)

    def _read_into(self, cipher: SectorCipher, sector: int, view: memoryview,
                   offset: int) -> None:
        count = len(view) // SECTOR_SIZE
        self._media.read_into(view, offset)
        unwritten = zero_sectors(view, count)
        if len(unwritten) < count:
            cipher.decrypt_into(sector, view, view)
            for index in unwritten:
                view[index * SECTOR_SIZE : (index + 1) * SECTOR_SIZE] = _ZERO_SECTOR

    def write(self, sector: int, data: bytes) -> None:
        size = len(data)
        if size % SECTOR_SIZE:
            raise DriveError("writes must be whole 4096-byte sectors")
        cipher = self._check(sector, size // SECTOR_SIZE)
        offset = self._data_start + sector * SECTOR_SIZE
        if cipher is None:
            self._media.write_all(data, offset)
            return
        stage, step = _stage.get(), _stage.size
        # Up to a chunk at a time through the staging buffer (memory stays bounded whatever
        # the size); a write of at most a chunk, the engine's case, passes ``data`` itself.
        for start in range(0, size, step):
            piece = data if size <= step else data[start : start + step]
            out = stage[: len(piece)]
            cipher.encrypt_into(sector + start // SECTOR_SIZE, piece, out)
            self._media.write_all(out, offset + start)

    def flush(self) -> None:
        self._media.sync_data()


def _new_dek() -> Secret:
    """64 random bytes for AES-256-XTS; redrawn in the (2**-256) case of equal halves."""
    while True:
        raw = os.urandom(XTS_KEY_SIZE)
        if not hmac.compare_digest(raw[:32], raw[32:]):
            return Secret(raw)
