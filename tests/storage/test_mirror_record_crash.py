"""kill -9 while the metadata mirror set changes: every slice drive the record names holds
every acknowledged change, at every instant.

The worker (mirror_worker.py) creates volumes while it adds slice drives, removes mirrors and
makes mirrors fail, so the mirror set changes every few commits and drives with old copies
pile up. This test kills it with SIGKILL once its log reaches a random length (a third of the
runs as soon as it starts opening the engine), then, for each
slice drive the record names, reads the metadata as a start-up would with the *other*
recorded drives missing (every old copy present) and checks that every acknowledged volume is
there. Then the worker goes on from that state, as a restarted cluster would.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from sealbox.cluster.mirror_record import MirrorRecord
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_log import Loaded, SliceMirror
from sealbox.storage.slice_store import SliceStore
from tests.storage import mirror_worker as worker
from tests.support.proc import run_until_logged

WORKER = Path(worker.__file__)
ROOT = Path(__file__).resolve().parents[2]
KILLS = 30


def load_without(root: Path, absent: set[int]) -> dict[int, tuple[SliceMirror, Loaded | None]]:
    """Each slice drive's own metadata view, as a start-up loads it, the ``absent`` ones left
    out."""
    devs = [(d, FileBlockDevice(worker.slice_path(root, d), worker.SLICE_SECTORS))
            for d in worker.slice_drives(root)
            if d not in absent and worker.slice_path(root, d).exists()]
    return SliceStore.load_all(devs, worker.KEY)


def test_kill_9_never_leaves_a_recorded_mirror_without_an_acknowledged_change(
        tmp_path: Path) -> None:
    rng = random.Random(4321)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    record = MirrorRecord(tmp_path / "mirrors.json")
    stale_seen = 0
    for run in range(KILLS):
        log = tmp_path / "log"
        # One run in three is killed while it opens the engine (its first line, "O"), when
        # the open may move the metadata onto other slice drives.
        extra = 1 if rng.random() < 0.34 else rng.randrange(2, 60)
        lines = (log.read_bytes().count(b"\n") if log.exists() else 0) + extra
        proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path),
                                 str(1 + 1000 * run), str(run)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            run_until_logged(proc, log, lines)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
        acked = worker.acknowledged(tmp_path)
        recorded = record.read()
        if recorded is None:  # killed while formatting: nothing can have been acknowledged
            assert not acked, f"run {run}: no mirror recorded"
            continue
        for mirror in sorted(recorded):
            loaded = load_without(tmp_path, set(recorded) - {mirror})
            # What a start-up reads with only this recorded drive of the set present:
            best = SliceStore.current_of(loaded, recorded)
            missing = acked - set(best.state.volumes)
            assert not missing, f"run {run}: mirror {mirror} lacks volumes {sorted(missing)}"
            # Not vacuous: old copies that would have lost acknowledged volumes were there.
            stale_seen += any(v is not None and not acked <= set(v.state.volumes)
                              for _, v in loaded.values())
    assert len(worker.acknowledged(tmp_path)) > 5 * KILLS
    assert len(worker.slice_drives(tmp_path)) > 8  # the mirror set really moved
    assert stale_seen > KILLS // 2
