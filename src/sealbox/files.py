"""Durable small-file primitives shared by key files, drive files and records.

Each raises ``OSError``; callers that report errors to clients wrap it in their own error.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_fully(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def sync_directory(path: str | Path) -> None:
    """Make the directory's entries (a new, renamed or removed name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically and durably: after a crash it holds the old
    content or the new, and after this returns, the new. The file has ``mode`` from its
    creation."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        write_fully(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_directory(path.parent)
