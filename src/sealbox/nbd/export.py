"""What the NBD server serves: named exports of byte-addressed storage.

The NBD layer knows nothing of keys, drives or replication; a volume of the storage engine
implements :class:`Export` structurally, and the cluster provides the :class:`ExportCatalog`.
Export methods are blocking and may be called from worker threads.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class ExportUnavailable(Exception):
    """The export exists but cannot be served now (e.g. its drives are locked, or an
    administrator locked it); ``reason`` is safe to send to the client. At NBD_OPT_INFO/GO the
    client gets an error reply with the reason; a request on an open connection gets EIO."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExportAccessDenied(Exception):
    """The export refuses this request by policy (an administrator made it read-only or
    locked): the client gets EPERM, the protocol's answer to a write on a read-only export,
    not EIO, which would tell it the storage failed. ``reason`` is safe to send."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Export(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int:
        """Size in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable when this returns."""
        ...

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        ...

    def trim(self, offset: int, length: int) -> None: ...

    def write_zeroes(self, offset: int, length: int, fua: bool = False) -> None: ...


@runtime_checkable
class AccessControlled(Protocol):
    """An export whose access can change while it is served. Exports without it are writable;
    those with it raise :class:`ExportAccessDenied` from the calls they refuse."""

    @property
    def read_only(self) -> bool:
        """Writes are refused now: NBD_FLAG_READ_ONLY is offered at NBD_OPT_INFO/GO."""
        ...


def is_read_only(export: Export) -> bool:
    return isinstance(export, AccessControlled) and export.read_only


class ExportCatalog(Protocol):
    def list_exports(self) -> list[str]: ...

    def open_export(self, name: str) -> Export:
        """The export named ``name``; raises KeyError if there is none, or
        :class:`ExportUnavailable` if it cannot be served now."""
        ...
