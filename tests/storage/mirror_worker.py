"""Metadata mirror churn for the mirror-record crash test; run as a script, killed with SIGKILL.

``python mirror_worker.py ROOT FIRST_ID SEED`` opens (or formats) a volume engine whose
metadata mirror set is recorded in ``ROOT/mirrors.json`` (the cluster's
:class:`~sealbox.cluster.mirror_record.MirrorRecord`) and, until killed, creates volumes while
it changes the mirror set every few commits: a new slice drive is added (it may become a
mirror), a mirror is removed (RemoveDrives: a replacement first), or a mirror's drive starts
failing (the next commit drops it; the failure path then finds a replacement). Drives left
behind keep old copies of the metadata: exactly what a start-up must never read.

Logs, each line fsync'd, in ``ROOT/log``:

    S <id> <node>   slice drive <id> of node <node> is about to be added (file slice<id>;
                    slice drives 10, 20, 30 and 40 of nodes 1 to 4 are there from the start)
    A <volume id>   create_volume returned: the change is acknowledged
    O               the engine is about to be opened (it may choose new mirrors)
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

from sealbox.cluster.mirror_record import MirrorRecord
from sealbox.storage import volume_repair
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import (
    MetadataNotCurrent,
    MetadataUnavailable,
    NotEnoughSpace,
    VolumeDataUnavailable,
)
from tests.storage.devices import FlakyDevice

KEY = b"mirror-crash-test-key-0123456789"
SLICE_SECTORS = 256
NODES = (1, 2, 3, 4)


def slice_drives(root: Path) -> dict[int, int]:
    """Drive id -> node of every slice drive: one per node to start with (ids 10, 20, ...),
    then every one logged (created or about to be)."""
    out = {10 * node: node for node in NODES}
    log = root / "log"
    if log.exists():
        for line in log.read_text().splitlines():
            kind, *fields = line.split()
            if kind == "S" and len(fields) == 2:
                out[int(fields[0])] = int(fields[1])
    return out


def acknowledged(root: Path) -> set[int]:
    log = root / "log"
    if not log.exists():
        return set()
    return {int(f[1]) for line in log.read_text().splitlines()
            if len(f := line.split()) == 2 and f[0] == "A"}


def slice_path(root: Path, drive_id: int) -> Path:
    return root / f"slice{drive_id}"


class Worker:
    def __init__(self, root: Path, first_id: int, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.next_volume = first_id
        self.log = os.open(root / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.flaky: dict[int, FlakyDevice] = {}
        record = MirrorRecord(root / "mirrors.json")
        known = slice_drives(root)
        initial = {10 * node for node in NODES}
        specs = []
        for drive_id, node in sorted(known.items()):
            path = slice_path(root, drive_id)
            if drive_id not in initial and not path.exists():  # killed before it was made
                continue
            dev = FileBlockDevice(path, SLICE_SECTORS, create=not path.exists())
            self.flaky[drive_id] = FlakyDevice(dev)
            specs.append(DriveSpec(drive_id, node, Role.SLICE, self.flaky[drive_id]))
        self.next_drive = max(known) + 1
        self._note("O")  # opening: a kill may land while the open moves the mirrors
        # As the cluster does: open, and format only if no slice drive holds any metadata.
        try:
            self.engine = StorageEngine(specs, integrity_key=KEY, witness=record.witness())
        except MetadataNotCurrent:
            raise
        except MetadataUnavailable:
            self.engine = StorageEngine(specs, integrity_key=KEY, create=True,
                                        witness=record.witness())

    def _note(self, line: str) -> None:
        os.write(self.log, (line + "\n").encode())
        os.fsync(self.log)

    def run(self) -> None:
        broken: int | None = None
        repair_in = 0
        while True:
            self._create_volume()
            if broken is not None:
                # The cluster notices a failure a little later: a few more changes are made
                # without the dropped mirror before its replacement is chosen.
                repair_in -= 1
                if repair_in <= 0:
                    volume_repair.fail_slice_drive(self.engine, broken)
                    broken = None
                continue
            choice = self.rng.random()
            if choice < 0.25:
                self._add_slice_drive()
            elif choice < 0.4:
                self._remove_a_mirror()
            elif choice < 0.55 and len(self.engine.metadata_mirrors) > 1:
                broken = self.rng.choice(self.engine.metadata_mirrors)
                self.flaky[broken].broken = True  # the next commit drops it
                repair_in = self.rng.randrange(1, 5)

    def _create_volume(self) -> None:
        vid = self.next_volume
        self.next_volume += 1
        self.engine.create_volume(vid, f"v{vid}", 4096)
        self._note(f"A {vid}")

    def _add_slice_drive(self) -> None:
        drive_id, node = self.next_drive, self.rng.choice(NODES)
        self.next_drive += 1
        self._note(f"S {drive_id} {node}")
        dev = FlakyDevice(FileBlockDevice(slice_path(self.root, drive_id), SLICE_SECTORS,
                                          create=True))
        self.flaky[drive_id] = dev
        self.engine.add_drive(DriveSpec(drive_id, node, Role.SLICE, dev))

    def _remove_a_mirror(self) -> None:
        mirror = self.rng.choice(self.engine.metadata_mirrors)
        # Refused when no other node has a slice drive for a replacement: the drive stays.
        with contextlib.suppress(MetadataUnavailable, NotEnoughSpace, VolumeDataUnavailable):
            volume_repair.remove_slice_drive(self.engine, mirror)


def main() -> None:
    root, first_id, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    worker = Worker(root, first_id, seed)
    print("ready", flush=True)
    worker.run()


if __name__ == "__main__":
    main()
