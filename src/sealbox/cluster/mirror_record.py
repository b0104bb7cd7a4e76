"""The witness of the volume metadata: which slice drives hold every acknowledged change.

The volume engine reports its metadata mirror set whenever it changes (see
:mod:`sealbox.storage.slice_store`), and a start-up reads the metadata only from a drive of
the set recorded here; that is what lets it fail slice drives that died while the cluster was
down (:mod:`sealbox.cluster.boot_losses`).

The record is a small file of its own in the data dir, not a row of the configuration store:
the engine reports a change from inside a metadata commit, holding the metadata lock, on
whichever thread committed (an NBD worker allocating a chunk, a repair job). A row would make
every allocating write wait behind the configuration store's writers, and fail on a thread
already inside a transaction (SQLite does not nest them). A file replaced atomically (written,
flushed, renamed, directory flushed) has no lock to wait for, and is either the old set or the
new one after a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

from sealbox import files
from sealbox.storage.volume_types import MirrorWitness

FILE_NAME = "metadata-mirrors.json"
_MODE = 0o600


class MirrorRecord:
    def __init__(self, path: Path) -> None:
        self._path = path

    def read(self) -> frozenset[int] | None:
        """The recorded engine ids, or None if nothing was ever recorded. A damaged file raises
        ValueError: guessing could serve an old copy of the metadata."""
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return None
        doc = json.loads(text)  # a JSONDecodeError is a ValueError
        mirrors = doc.get("mirrors") if isinstance(doc, dict) else None
        if not isinstance(mirrors, list) or not mirrors or \
                not all(type(m) is int for m in mirrors):
            raise ValueError(f"{self._path}: 'mirrors' is not a list of drive ids")
        return frozenset(mirrors)

    def write(self, ids: list[int]) -> None:
        """Replace the record durably: after this returns, a crash leaves the new set."""
        files.replace_durably(self._path, json.dumps({"mirrors": sorted(ids)}).encode(), _MODE)

    def witness(self) -> MirrorWitness:
        return MirrorWitness(self.read(), self.write)
