"""Resync benchmark: time to re-protect after losing one block drive, against ``cp``.

    .venv/bin/python bench/resync.py [--size 1536M] [--dir DIR]

Starts ``sealbox up`` (3 nodes, 2 drives each: one block drive per node) in DIR, writes
``--size`` of random data into a volume through NBD (nbdcopy), so each block drive holds about
2/3 of it (1 GiB with the default), then pulls one block drive (deletes its file) and times
from the pull until the ``DriveResync`` job has given every chunk its second copy again
(detection at a 0.2 s monitor interval included), and the CPU time sealbox spent on it (a
figure that other load on the machine does not inflate). In the same run it copies the same
number of bytes with ``cp`` on the same disk and ``sync``s them (sealbox flushes every copy it
makes).
Prints both and the ratio (goal: <= 3).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.proc import SealboxProcess, wait_until  # noqa: E402

GOAL = 3.0
MIB = 1 << 20


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].isalpha() else int(text)


def _resync_chunks(proc: SealboxProcess) -> tuple[bool, int]:
    jobs = proc.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveResync"]})
    handles = jobs["result"]["asyncHandles"]
    done = bool(handles) and all(h["completed"] for h in handles)
    total = sum(int(h["data"].get("chunksCopied", 0)) for h in handles if h["completed"])
    return done, total


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_resync(work: Path, size: int) -> tuple[float, float, int]:
    proc = SealboxProcess(work / "data", drive_size="2GiB", nodes=3,
                          extra=["--drives-per-node", "2", "--monitor-interval", "0.2"])
    proc.start()
    try:
        sf = proc.element()
        account = sf.add_account(username="bench").account_id
        sf.create_volume(name="bench", account_id=account, total_size=size)
        src = work / "src.img"
        with open(src, "wb") as f:
            for _ in range(size // (64 * MIB)):
                f.write(os.urandom(64 * MIB))
        subprocess.run(["nbdcopy", str(src), f"nbd://127.0.0.1:{proc.nbd_port}/bench"],
                       check=True)
        src.unlink()
        victim = proc.data_dir / "drives" / "node1" / "drive1.img"
        assert proc.proc is not None
        cpu0, start = _cpu_seconds(proc.proc.pid), time.monotonic()
        victim.unlink()
        wait_until(lambda: _resync_chunks(proc)[0], 600, "the resync", interval=0.02)
        elapsed = time.monotonic() - start
        cpu = _cpu_seconds(proc.proc.pid) - cpu0
        return elapsed, cpu, _resync_chunks(proc)[1] * MIB
    finally:
        proc.stop()


def time_cp(work: Path, nbytes: int) -> float:
    src, dst = work / "cp-src", work / "cp-dst"
    with open(src, "wb") as f:
        for _ in range(max(1, nbytes // (64 * MIB))):
            f.write(os.urandom(64 * MIB))
        os.fsync(f.fileno())
    start = time.monotonic()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    subprocess.run(["sync", str(dst)], check=True)
    elapsed = time.monotonic() - start
    src.unlink()
    dst.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1536M", help="data written into the volume")
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealbox-resync-", dir=args.dir))
    try:
        load = os.getloadavg()[0]
        resync, cpu, nbytes = time_resync(work, _size(args.size))
        cp = time_cp(work, nbytes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = resync / cp
    print(f"re-protected {nbytes / MIB:.0f} MiB of chunks in {resync:.2f} s "
          f"({nbytes / MIB / resync:.0f} MiB/s, detection included)")
    print(f"  sealbox used {cpu:.2f} CPU-seconds for it ({nbytes / MIB / cpu:.0f} MiB per "
          f"CPU-second); load average at start {load:.1f} on {os.cpu_count()} CPUs")
    print(f"cp + sync of {nbytes / MIB:.0f} MiB on the same disk: {cp:.2f} s")
    print(f"ratio: {ratio:.2f} (goal <= {GOAL:g}) {'OK' if ratio <= GOAL else 'ABOVE GOAL'}")


if __name__ == "__main__":
    main()
