"""sealbox.nbd: the NBD protocol over volumes (it knows nothing of keys).

``NbdServer`` serves an ``ExportCatalog``; ``memory`` has simple exports for tests and benchmarks.
See docs/nbd.md.
"""

from sealbox.nbd.export import (
    AccessControlled,
    Export,
    ExportAccessDenied,
    ExportCatalog,
    ExportUnavailable,
)
from sealbox.nbd.memory import DictCatalog, FileExport, MemoryExport
from sealbox.nbd.server import NbdServer, ServerSettings

__all__ = [
    "AccessControlled",
    "DictCatalog",
    "Export",
    "ExportAccessDenied",
    "ExportCatalog",
    "ExportUnavailable",
    "FileExport",
    "MemoryExport",
    "NbdServer",
    "ServerSettings",
]
