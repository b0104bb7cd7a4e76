"""NBD throughput: sealbox's server over a FileExport against `nbdkit file`, same disk.

    .venv/bin/python bench/nbd.py [--size 1G] [--dir /var/tmp] [--runs 1]

For each target: `nbdcopy` a random source file in (write), then `nbdcopy` the export out to
`null:` (read). Prints MB/s and sealbox/nbdkit ratios. Absolute numbers drift between
machines; the ratio is the figure to watch (target: write >= 0.3x nbdkit).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sealbox.nbd.memory import DictCatalog, FileExport
from sealbox.nbd.server import NbdServer

TIMEOUT = 300.0  # seconds per nbdcopy run: the bench must end even if something hangs


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_source(path: Path, size: int) -> None:
    """Random bytes (a 16 MiB random pattern repeated: incompressible to NBD, cheap to make)."""
    pattern = os.urandom(16 << 20)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, len(pattern))
            f.write(pattern[:n])
            left -= n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, deadline: float) -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling a starting daemon; bounded by the deadline


def timed_copy(src: str, dst: str) -> float:
    start = time.perf_counter()
    subprocess.run(["nbdcopy", src, dst], check=True, timeout=TIMEOUT)
    return time.perf_counter() - start


@contextlib.contextmanager
def sealbox_target(workdir: Path, size: int) -> Iterator[str]:
    export = FileExport("bench", workdir / "sealbox.img", size)
    server = NbdServer(DictCatalog([export]), port=0)
    server.start()
    try:
        yield f"nbd://127.0.0.1:{server.port}/bench"
    finally:
        server.stop()
        export.close()


@contextlib.contextmanager
def nbdkit_target(workdir: Path, size: int) -> Iterator[str]:
    image = workdir / "nbdkit.img"
    with image.open("wb") as f:
        f.truncate(size)
    port = free_port()
    cmd = ["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen([*cmd, "file", str(image)])
    try:
        wait_listening(port, time.monotonic() + 10)
        yield f"nbd://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_target(
    name: str, target: contextlib.AbstractContextManager[str], source: Path
) -> tuple[float, float]:
    size = source.stat().st_size
    with target as uri:
        write_s = timed_copy(str(source), uri)
        read_s = timed_copy(uri, "null:")
    write_mbs, read_mbs = size / write_s / 1e6, size / read_s / 1e6
    print(
        f"{name:8s} write {write_mbs:8.0f} MB/s ({write_s:.2f} s)   "
        f"read {read_mbs:8.0f} MB/s ({read_s:.2f} s)"
    )
    return write_mbs, read_mbs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="bytes to copy (K/M/G suffixes)")
    parser.add_argument("--dir", default=None, help="where the images go (default: $TMPDIR)")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report the best")
    args = parser.parse_args()
    if shutil.which("nbdcopy") is None or shutil.which("nbdkit") is None:
        sys.exit("nbdcopy and nbdkit are needed (Debian: libnbd-bin, nbdkit)")
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sealbox-nbd-bench-") as tmp:
        workdir = Path(tmp)
        source = workdir / "source.bin"
        make_source(source, size)
        print(f"nbdcopy {size / 2**20:.0f} MiB, {args.runs} run(s), images in {workdir}")
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.runs):
            for name, target in (("sealbox", sealbox_target), ("nbdkit", nbdkit_target)):
                w, r = run_target(name, target(workdir, size), source)
                bw, br = best.get(name, (0.0, 0.0))
                best[name] = (max(bw, w), max(br, r))
                for image in workdir.glob("*.img"):
                    image.unlink()
    (sw, sr), (kw, kr) = best["sealbox"], best["nbdkit"]
    print(
        f"best     sealbox write {sw:.0f} MB/s, read {sr:.0f} MB/s; "
        f"nbdkit write {kw:.0f} MB/s, read {kr:.0f} MB/s"
    )
    print(f"ratio    sealbox/nbdkit write {sw / kw:.2f}x, read {sr / kr:.2f}x")
    verdict = "met" if min(sw / kw, sr / kr) >= 0.3 else "NOT met"
    print(f"target   >= 0.30x of nbdkit: {verdict}")


if __name__ == "__main__":
    main()
