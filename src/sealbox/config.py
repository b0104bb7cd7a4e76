"""The typed configuration of one sealbox process, built once at start and passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sealbox.kmip.certs import KeyType
from sealbox.secrets import Secret

# Drive files: at least 64 MiB (room for the metadata and a few chunks); at most 8 TiB, well
# inside what common file systems allow one sparse file (ext4: 16 TiB), so that a typo such
# as 100T is refused as a bad option before anything is created, not by the file system halfway
# through the first start.
MIN_DRIVE_SIZE = 64 << 20
MAX_DRIVE_SIZE = 8 << 40

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"1GiB"``, ``"512M"``, ``"4096"`` → bytes (binary units)."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 1GiB, 512MiB, 65536)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    nbd_port: int = 10809
    nodes: int = 4
    drives_per_node: int = 3
    drive_size: int = 1 << 30
    create: bool = True
    software_encryption: bool = True
    admin_user: str = "admin"
    admin_password: Secret | None = field(default=None, repr=False)
    # How often background monitors (faults, certificates) look again, in seconds.
    monitor_interval: float = 30.0
    # The cluster's key pair for key servers: RSA 2048 is accepted everywhere.
    client_key_type: KeyType = KeyType.RSA_2048
    # Bounds on every KMIP connection attempt and operation, in seconds.
    kmip_connect_timeout: float = 3.0
    kmip_timeout: float = 5.0
    # Boot unlock retries back off exponentially up to this many seconds between attempts.
    unlock_retry_max: float = 30.0
    # How often the state of an external master key is checked on its key server.
    key_check_interval: float = 900.0
    # Test-only: a pause after each rekey step, so crash tests can kill inside every phase
    # (from the environment variable SEALBOX_TEST_REKEY_STEP_DELAY; never set in production).
    test_rekey_step_delay: float = 0.0
