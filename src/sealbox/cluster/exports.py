"""The NBD export catalog: every active volume, by name, served under its Element access."""

from __future__ import annotations

from sealbox.cluster.storage import StorageService
from sealbox.cluster.volume_access import AccessGate, AccessGates
from sealbox.cluster.volumes import COLL
from sealbox.nbd.export import Export, ExportUnavailable
from sealbox.store.base import ConfigStore, Doc


class GatedVolume:
    """A volume as NBD serves it: every read and write passes the volume's access gate first,
    so an access change reaches connections opened before it. FLUSH is never refused: it only
    makes durable what the volume already acknowledged, and refusing it could only lose that."""

    def __init__(self, volume: Export, gate: AccessGate) -> None:
        self._volume = volume
        self._gate = gate

    @property
    def name(self) -> str:
        return self._volume.name

    @property
    def size(self) -> int:
        return self._volume.size

    @property
    def read_only(self) -> bool:
        return self._gate.read_only

    def read(self, offset: int, length: int) -> bytes:
        with self._gate.admit(writes=False):
            return self._volume.read(offset, length)

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        with self._gate.admit(writes=True):
            self._volume.write(offset, data, fua)

    def flush(self) -> None:
        self._volume.flush()

    def trim(self, offset: int, length: int) -> None:
        with self._gate.admit(writes=True):
            self._volume.trim(offset, length)

    def write_zeroes(self, offset: int, length: int, fua: bool = False) -> None:
        with self._gate.admit(writes=True):
            self._volume.write_zeroes(offset, length, fua)


class VolumeCatalog:
    def __init__(self, store: ConfigStore, storage: StorageService, gates: AccessGates) -> None:
        """``gates``: the volume service's (a ModifyVolume access change reaches open
        connections through them)."""
        self._store = store
        self._storage = storage
        self._gates = gates

    def list_exports(self) -> list[str]:
        with self._store.read() as txn:
            return [d["name"] for _, d in txn.list(COLL) if d["status"] == "active"]

    def open_export(self, name: str) -> Export:
        doc = self._active(name)
        engine = self._storage.engine
        if engine is None:
            raise ExportUnavailable(self._storage.unavailable_reason)
        gate = self._gates.gate(doc["volumeID"], doc["access"])
        if not gate.mode.reads:  # locked: refused at NBD_OPT_GO, as unavailable volumes are
            raise ExportUnavailable(gate.mode.why)
        return GatedVolume(engine.open_volume(doc["volumeID"]), gate)

    def _active(self, name: str) -> Doc:
        with self._store.read() as txn:
            found = [d for _, d in txn.list(COLL) if d["name"] == name]
        if not found or found[0]["status"] != "active":
            raise KeyError(name)
        return found[0]
