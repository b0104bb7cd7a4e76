"""Simple exports for tests, demos and benchmarks: in memory, or over a plain file.

They implement :class:`sealbox.nbd.export.Export` and keep call counters (``flushes``,
``fua_writes``, ...) so that tests can check which requests reached the export.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from sealbox.nbd.export import Export, ExportUnavailable

_ZERO_CHUNK = 1024 * 1024


class _Counters:
    def __init__(self) -> None:
        self.flushes = 0
        self.fua_writes = 0
        self.writes = 0
        self.trims = 0
        self.zero_writes = 0
        self._count_lock = threading.Lock()

    def _count(self, what: str, fua: bool = False) -> None:
        with self._count_lock:
            setattr(self, what, getattr(self, what) + 1)
            if fua:
                self.fua_writes += 1


def _check_range(size: int, offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > size:
        raise ValueError(f"range {offset}+{length} outside export of {size} bytes")


class MemoryExport(_Counters):
    """An export held in a ``bytearray``; thread-safe."""

    def __init__(self, name: str, size: int, data: bytes | None = None) -> None:
        super().__init__()
        self._name = name
        self._buf = bytearray(size)
        if data is not None:
            self._buf[: len(data)] = data[:size]
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return len(self._buf)

    def getvalue(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def read(self, offset: int, length: int) -> bytes:
        _check_range(self.size, offset, length)
        with self._lock:
            return bytes(self._buf[offset : offset + length])

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        _check_range(self.size, offset, len(data))
        with self._lock:
            self._buf[offset : offset + len(data)] = data
        self._count("writes", fua)

    def flush(self) -> None:
        self._count("flushes")

    def trim(self, offset: int, length: int) -> None:
        # Trimmed bytes read back as zeroes here, which the protocol allows (not requires).
        self._zero(offset, length)
        self._count("trims")

    def write_zeroes(self, offset: int, length: int, fua: bool = False) -> None:
        self._zero(offset, length)
        self._count("zero_writes", fua)

    def _zero(self, offset: int, length: int) -> None:
        _check_range(self.size, offset, length)
        with self._lock:
            self._buf[offset : offset + length] = bytes(length)


class FileExport(_Counters):
    """An export over a plain file (created or extended to ``size``): pread/pwrite, and
    fdatasync for flush and FUA. Thread-safe (positional I/O has no shared file offset)."""

    def __init__(self, name: str, path: str | os.PathLike[str], size: int | None = None) -> None:
        super().__init__()
        self._name = name
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if size is not None and os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._size = size if size is not None else os.fstat(self._fd).st_size

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        os.close(self._fd)

    def read(self, offset: int, length: int) -> bytes:
        _check_range(self._size, offset, length)
        data = os.pread(self._fd, length, offset)
        while len(data) < length:  # pread may return short; the tail of a sparse file is zeroes
            more = os.pread(self._fd, length - len(data), offset + len(data))
            if not more:
                return data + bytes(length - len(data))
            data += more
        return data

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        _check_range(self._size, offset, len(data))
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written
        if fua:
            os.fdatasync(self._fd)
        self._count("writes", fua)

    def flush(self) -> None:
        os.fdatasync(self._fd)
        self._count("flushes")

    def trim(self, offset: int, length: int) -> None:
        self._zero(offset, length)
        self._count("trims")

    def write_zeroes(self, offset: int, length: int, fua: bool = False) -> None:
        self._zero(offset, length)
        if fua:
            os.fdatasync(self._fd)
        self._count("zero_writes", fua)

    def _zero(self, offset: int, length: int) -> None:
        _check_range(self._size, offset, length)
        zeroes = bytes(min(length, _ZERO_CHUNK))
        end = offset + length
        while offset < end:
            n = min(len(zeroes), end - offset)
            offset += os.pwrite(self._fd, memoryview(zeroes)[:n], offset)


class DictCatalog:
    """An :class:`~sealbox.nbd.export.ExportCatalog` over a dict; an export can be marked
    unavailable with a reason, which clients then see when they try to open it."""

    def __init__(self, exports: Iterable[Export] = ()) -> None:
        self._exports: dict[str, Export] = {e.name: e for e in exports}
        self._unavailable: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, export: Export) -> None:
        with self._lock:
            self._exports[export.name] = export

    def remove(self, name: str) -> None:
        with self._lock:
            self._exports.pop(name, None)
            self._unavailable.pop(name, None)

    def set_unavailable(self, name: str, reason: str | None) -> None:
        """Refuse ``name`` with ``reason`` (``None`` makes it available again)."""
        with self._lock:
            if reason is None:
                self._unavailable.pop(name, None)
            else:
                self._unavailable[name] = reason

    def list_exports(self) -> list[str]:
        with self._lock:
            return sorted(self._exports)

    def open_export(self, name: str) -> Export:
        with self._lock:
            reason = self._unavailable.get(name)
            export = self._exports[name]  # KeyError for an unknown name, as the protocol wants
        if reason is not None:
            raise ExportUnavailable(reason)
        return export
