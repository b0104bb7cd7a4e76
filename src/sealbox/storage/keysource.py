"""Where master keys come from: the seam between the drives and key management.

A drive asks for a master key by its identifier and gets a :class:`Secret` or an error; it
never learns whether the key came from a file, from memory or from a KMIP server. External
(KMIP) sources implement the same one-method protocol and raise :class:`MasterKeyUnavailable`
(or a subclass) when a key cannot be had.

The internal source keeps each master key in its own file in a directory of the data
directory: 32 random bytes, mode 0600, named after the key's UUID. Threat model: anyone who
can read that file and the drives can read the data; the file mode keeps other local users
out, and the loader refuses a file whose mode was widened, so a mistake is loud, not silent.
Deleting overwrites the bytes before unlinking; on copy-on-write or journalled file systems
and SSDs old blocks may survive, which is why rekey also rewraps every DEK and clears slots.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Protocol

from sealbox import files
from sealbox.errors import SealboxError
from sealbox.secrets import Secret
from sealbox.storage.keywrap import MASTER_KEY_SIZE

KEY_FILE_MODE: Final = 0o600
_SUFFIX: Final = ".mk"


class MasterKeyUnavailable(SealboxError):
    """The key source cannot provide this master key (unknown, deleted, or unreachable)."""

    element_name = "xMasterKeyUnavailable"


class KeyFileInsecure(MasterKeyUnavailable):
    """A master-key file exists but is not a private regular file (mode 0600, owned by us)."""

    element_name = "xKeyFileInsecure"


class KeySource(Protocol):
    def get(self, master_key_id: str) -> Secret:
        """The master key with this identifier; raises :class:`MasterKeyUnavailable`."""
        ...


class MemoryKeySource:
    """Master keys held in memory: tests, and keys fetched from a key server at boot."""

    def __init__(self, keys: Mapping[str, Secret] | None = None) -> None:
        self._keys: dict[str, Secret] = dict(keys or {})

    def add(self, master_key_id: str, key: Secret) -> None:
        self._keys[master_key_id] = key

    def remove(self, master_key_id: str) -> None:
        self._keys.pop(master_key_id, None)

    def get(self, master_key_id: str) -> Secret:
        try:
            return self._keys[master_key_id]
        except KeyError:
            raise MasterKeyUnavailable(f"master key {master_key_id} is not available") from None


def _canonical_id(master_key_id: str) -> str:
    """Only canonical UUIDs name key files, so an identifier can never be a path."""
    try:
        parsed = str(uuid.UUID(master_key_id))
    except ValueError:
        raise MasterKeyUnavailable(f"master key {master_key_id!r} is not internal") from None
    if parsed != master_key_id:
        raise MasterKeyUnavailable(f"master key {master_key_id!r} is not internal")
    return parsed


class InternalKeyStore:
    """Internal master keys as 0600 files in ``directory`` (created 0700 if missing)."""

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)

    def _path(self, master_key_id: str) -> Path:
        return self._dir / (_canonical_id(master_key_id) + _SUFFIX)

    def create(self) -> str:
        """Generate a new master key, store it durably, and return its identifier."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        master_key_id = str(uuid.uuid4())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._path(master_key_id), flags, KEY_FILE_MODE)
        try:
            os.fchmod(fd, KEY_FILE_MODE)  # exact mode whatever the umask
            files.write_fully(fd, os.urandom(MASTER_KEY_SIZE))
            os.fsync(fd)
        finally:
            os.close(fd)
        files.sync_directory(self._dir)
        return master_key_id

    def get(self, master_key_id: str) -> Secret:
        path = self._path(master_key_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise MasterKeyUnavailable(f"master key {master_key_id} is not available") from error
        try:
            _check_private(fd, master_key_id)
            data = os.read(fd, MASTER_KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(data) != MASTER_KEY_SIZE:
            raise MasterKeyUnavailable(f"master key {master_key_id} file is damaged")
        return Secret(data)

    def ids(self) -> list[str]:
        """Identifiers of the stored master keys."""
        if not self._dir.is_dir():
            return []
        return sorted(p.name[: -len(_SUFFIX)] for p in self._dir.glob("*" + _SUFFIX))

    def delete(self, master_key_id: str) -> None:
        """Overwrite the key file with random bytes, fsync, unlink. Missing is not an error:
        a rekey rolled forward after a crash may delete the same key twice."""
        path = self._path(master_key_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            files.write_fully(fd, os.urandom(max(os.fstat(fd).st_size, MASTER_KEY_SIZE)))
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        files.sync_directory(self._dir)


def _check_private(fd: int, master_key_id: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != KEY_FILE_MODE:
        raise KeyFileInsecure(f"master key {master_key_id} file must be a regular 0600 file")
    if info.st_uid != os.geteuid():
        raise KeyFileInsecure(f"master key {master_key_id} file is not owned by this user")
