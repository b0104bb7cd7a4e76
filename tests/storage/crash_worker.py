"""Write storm for the volume crash test; run as a script, killed with SIGKILL by the test.

``python crash_worker.py ROOT LOG FIRST_ID SEED`` opens the engine over the drive files in ROOT
and, from two threads, writes, trims and flushes volume 1 until killed. Before an operation is
issued its intent goes to LOG (fsync'd), so the test knows every value a sector may hold:

    W <id> <first sector> <count>   write; sector s then holds sector_value(id, s)
    T <id> <first sector> <count>   trim/zero of whole chunks; the sectors then read as zeros
    D <id>                          FUA write <id> has returned (it is durable)
    F <id>                          a flush that began after every op <= id had returned has
                                    itself returned (those ops are durable)

Thread t only touches chunks c with c % 2 == t, so each sector has one writer and the ids of
the ops on a sector are in the order they happened.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import threading
from pathlib import Path

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import CHUNK_SIZE, SECTORS_PER_CHUNK
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume import Volume

KEY = b"crash-test-key-0123456789abcdef!"
CHUNKS = 16  # room for chunks to be unmapped and mapped again, also ahead of writers
VOLUME_SIZE = CHUNKS * CHUNK_SIZE


def sector_value(op_id: int, sector: int) -> bytes:
    return struct.pack("<QQ", op_id, sector) * (SECTOR_SIZE // 16)


def drives(root: Path, create: bool) -> list[DriveSpec]:
    out = []
    for n in (1, 2, 3):
        out.append(DriveSpec(10 * n, n, Role.SLICE,
                             FileBlockDevice(root / f"slice{n}", 512, create=create)))
        out.append(DriveSpec(10 * n + 1, n, Role.BLOCK,
                             FileBlockDevice(root / f"block{n}", 8192, create=create)))
    return out


def open_engine(root: Path, create: bool = False) -> StorageEngine:
    return StorageEngine(drives(root, create), integrity_key=KEY, create=create)


class Storm:
    def __init__(self, vol: Volume, log_path: Path, first_id: int) -> None:
        self.vol = vol
        self.log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.lock = threading.Lock()
        self.next_id = first_id
        self.done: set[int] = set()
        self.watermark = first_id - 1  # every op <= watermark has returned

    def note(self, line: str) -> None:
        os.write(self.log, line.encode() + b"\n")
        os.fsync(self.log)

    def begin(self, kind: str, first: int, count: int) -> int:
        with self.lock:
            op_id = self.next_id
            self.next_id += 1
            self.note(f"{kind} {op_id} {first} {count}")
            return op_id

    def end(self, op_id: int) -> None:
        with self.lock:
            self.done.add(op_id)
            while self.watermark + 1 in self.done:
                self.watermark += 1
                self.done.discard(self.watermark)

    def one_op(self, rng: random.Random, owner: int) -> None:
        chunk = rng.randrange(owner, CHUNKS, 2)
        roll = rng.random()
        if roll < 0.1:
            op_id = self.begin("T", chunk * SECTORS_PER_CHUNK, SECTORS_PER_CHUNK)
            self.vol.trim(chunk * CHUNK_SIZE, CHUNK_SIZE)
            self.end(op_id)
            return
        # Whole chunks from their first sector (a streaming writer's pattern) make the engine
        # map the chunks ahead in its background helper, which the kills then interrupt too.
        count = rng.choice([1, 1, 2, 7, 64, 200, SECTORS_PER_CHUNK, SECTORS_PER_CHUNK])
        first = chunk * SECTORS_PER_CHUNK + rng.randrange(SECTORS_PER_CHUNK - count + 1)
        op_id = self.begin("W", first, count)
        data = b"".join(sector_value(op_id, s) for s in range(first, first + count))
        fua = roll > 0.95
        self.vol.write(first * SECTOR_SIZE, data, fua=fua)
        self.end(op_id)
        if fua:
            with self.lock:
                self.note(f"D {op_id}")

    def run(self, seed: int, owner: int) -> None:
        try:
            self._storm(random.Random(seed * 2 + owner), owner)
        except BaseException as exc:  # any failure must end the worker, visibly
            print(f"storm thread {owner} failed: {exc!r}", file=sys.stderr, flush=True)
            os._exit(3)

    def _storm(self, rng: random.Random, owner: int) -> None:
        while True:
            self.one_op(rng, owner)
            if rng.random() < 0.15:
                with self.lock:
                    mark = self.watermark
                self.vol.flush()
                with self.lock:
                    self.note(f"F {mark}")


def main() -> None:
    root, log, first_id, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(
        sys.argv[4])
    storm = Storm(open_engine(root).open_volume(1), log, first_id)
    threads = [threading.Thread(target=storm.run, args=(seed, t), daemon=True) for t in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
