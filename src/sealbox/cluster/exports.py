"""The NBD export catalog: every active volume, by name."""

from __future__ import annotations

from sealbox.cluster.storage import StorageService
from sealbox.cluster.volumes import COLL
from sealbox.nbd.export import Export, ExportUnavailable
from sealbox.store.base import ConfigStore


class VolumeCatalog:
    def __init__(self, store: ConfigStore, storage: StorageService) -> None:
        self._store = store
        self._storage = storage

    def list_exports(self) -> list[str]:
        with self._store.read() as txn:
            return [d["name"] for _, d in txn.list(COLL) if d["status"] == "active"]

    def open_export(self, name: str) -> Export:
        with self._store.read() as txn:
            found = [d for _, d in txn.list(COLL) if d["name"] == name]
        if not found or found[0]["status"] != "active":
            raise KeyError(name)
        engine = self._storage.engine
        if engine is None:
            raise ExportUnavailable(self._storage.unavailable_reason)
        return engine.open_volume(found[0]["volumeID"])
