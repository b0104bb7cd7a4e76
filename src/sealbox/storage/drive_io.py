"""Positioned I/O on a drive's file descriptor, with OS errors turned into drive errors.

``os.pread``/``os.pwrite`` carry their own offset, so threads share one descriptor without a
lock. Sizes come from seeking to the end, which works for block devices as well as files
(``st_size`` of a block device is 0).
"""

from __future__ import annotations

import os

from sealbox import files
from sealbox.storage.drive_errors import DriveIOError, DriveTruncated

Buffer = bytes | bytearray | memoryview


def _io_error(what: str, error: OSError) -> DriveIOError:
    return DriveIOError(f"drive I/O failed ({what}): {error.strerror or 'error'}")


def open_drive(path: str, create: bool, read_only: bool = False) -> int:
    # Read-only for looking only: closing a descriptor opened for writing makes udev rescan
    # a real block device.
    mode = os.O_RDONLY if read_only else os.O_RDWR
    flags = mode | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
    try:
        return os.open(path, flags, 0o600)
    except FileExistsError:
        raise DriveIOError(f"cannot create drive {path}: it already exists") from None
    except OSError as error:
        raise _io_error(f"open {path}", error) from error


def device_size(fd: int) -> int:
    """Bytes in the file or block device behind ``fd``."""
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    except OSError as error:
        raise _io_error("size", error) from error


def read_exact(fd: int, buf: bytearray, offset: int) -> None:
    """Fill ``buf`` from ``offset``; a read that ends early means the drive is truncated."""
    read_into(fd, memoryview(buf), offset)


def read_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill the writable ``view`` from ``offset`` (truncated drive: DriveTruncated)."""
    try:
        while view:
            got = os.preadv(fd, [view], offset)
            if got == 0:
                raise DriveTruncated("the drive ends before its data area does")
            view, offset = view[got:], offset + got
    except OSError as error:
        raise _io_error("read", error) from error


def read_at(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes from ``offset`` as a new ``bytes``: ``pread`` fills the object it
    returns, so the data is copied once, from the page cache, with no zero-filled buffer first.
    A read that ends early means the drive is truncated."""
    try:
        data = os.pread(fd, size, offset)
        if len(data) == size:
            return data
        parts, got = [data], len(data)
        while got < size:  # short reads: signals, or the end of the file
            more = os.pread(fd, size - got, offset + got)
            if not more:
                raise DriveTruncated("the drive ends before its data area does")
            parts.append(more)
            got += len(more)
        return b"".join(parts)
    except OSError as error:
        raise _io_error("read", error) from error


def write_all(fd: int, data: Buffer, offset: int) -> None:
    view = memoryview(data).cast("B")
    try:
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done
    except OSError as error:
        raise _io_error("write", error) from error


def sync_data(fd: int) -> None:
    try:
        os.fdatasync(fd)
    except OSError as error:
        raise _io_error("flush", error) from error


def sync_all(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as error:
        raise _io_error("sync", error) from error


def resize(fd: int, size: int) -> None:
    """Set a regular file's size; the new space is a hole (sparse) and reads as zeros."""
    try:
        os.ftruncate(fd, size)
    except OSError as error:
        raise _io_error("resize", error) from error


def sync_directory(path: str) -> None:
    """Make a new directory entry (a new drive file's name) durable."""
    try:
        files.sync_directory(path)
    except OSError as error:
        raise _io_error("sync directory", error) from error
