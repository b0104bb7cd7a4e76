"""kill -9 at arbitrary instants of repeated rekeys never leaves a drive the cluster cannot open.

A child process runs rekeys in DESIGN.md order against a real drive file and real internal key
files, reporting each step; the parent kills it with SIGKILL after a varying number of steps,
then checks that the committed master key alone still unlocks the drive and the data is intact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sealbox.storage.drive import Drive
from sealbox.storage.keysource import InternalKeyStore, MemoryKeySource

PATTERN = b"crash-safe" * 409 + b"sealbo"  # 4096 bytes

CHILD = r"""
import os, sys
from pathlib import Path
from sealbox.storage.drive import Drive
from sealbox.storage.keysource import InternalKeyStore

root = Path(sys.argv[1])
store = InternalKeyStore(root / "keys")

def commit(mk_id):  # step 4: one durable switch of the cluster's current master key
    tmp = root / "current.tmp"
    tmp.write_text(mk_id)
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, root / "current")

drive = Drive.open(root / "drive")
drive.unlock(store)
current = (root / "current").read_text()
while True:
    new = store.create(); print("created", flush=True)
    drive.stage_rewrap(new, store.get(new)); print("staged", flush=True)
    commit(new); print("committed", flush=True)
    store.delete(current); print("deleted", flush=True)
    drive.retire_slot(current); print("retired", flush=True)
    current = new
"""


def setup(root: Path) -> InternalKeyStore:
    store = InternalKeyStore(root / "keys")
    mk_id = store.create()
    with Drive.create(root / "drive", 1 << 20) as drive:
        drive.enable_software_encryption(mk_id, store.get(mk_id))
        drive.write(3, PATTERN)
        drive.flush()
    (root / "current").write_text(mk_id)
    return store


def run_and_kill(root: Path, steps: int) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert child.stdout is not None
    for _ in range(steps):
        assert child.stdout.readline(), "the child died on its own"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()


def recover(root: Path, store: InternalKeyStore) -> None:
    """What a restart does: the committed key alone must open the drive; then roll forward."""
    committed = (root / "current").read_text()
    only_committed = MemoryKeySource({committed: store.get(committed)})
    with Drive.open(root / "drive") as drive:
        assert drive.unlock(only_committed) == committed
        assert drive.read(3, 1) == PATTERN
        for slot in drive.header.slots:
            if slot is not None and slot.master_key_id != committed:
                drive.retire_slot(slot.master_key_id)
    for mk_id in store.ids():
        if mk_id != committed:
            store.delete(mk_id)


def test_sigkill_during_rekeys_never_loses_the_drive(tmp_path: Path) -> None:
    store = setup(tmp_path)
    for steps in (1, 2, 3, 4, 5, 8, 13, 21):
        run_and_kill(tmp_path, steps)
        recover(tmp_path, store)
    assert len(store.ids()) == 1
