"""Data-path benchmark: how close sealbox's encrypted data path gets to the C references.

    .venv/bin/python bench/datapath.py [--size 1G] [--runs 3] [--nbd-runs 1] [--parts abc]

Part (a), the sector cipher alone: AES-256-XTS over 4 KiB sectors encrypted in multi-sector
batches as a drive write does, with one data unit per sector (drive format 1, the goal's
subject) and with 1 MiB data units (format 2, what new drives use), against `openssl speed -evp
aes-256-xts -bytes 4096` run in the same invocation (one 4 KiB data unit per call there).
Both are measured per CPU-second of user time (openssl speed's default divisor), and they
alternate for ``--runs`` turns keeping the best of each, so that load from other processes
does not decide the ratio. Absolute numbers drift between machines;
the ratio is the figure to watch (goal: >= 0.25).

Part (b), the whole data path: a real ``sealbox up`` (4 nodes x 3 drives, two copies of every
chunk) with software encryption on and with ``--no-software-encryption`` (fresh data dirs), one
volume created through the Element API, ``nbdcopy`` of ``--size`` random bytes into the volume
(write) and out to ``null:`` (read); and ``nbdkit file`` on the same disk as the C reference.
Goals: encryption on >= 0.7x off, and encrypted sealbox >= 0.3x nbdkit, for write and read.
Also, without a goal, "nbdkit file, two copies": two nbdkit servers written the whole source at
once by two nbdcopy processes, i.e. the page-cache cost of the two copies sealbox keeps; and
"disk, O_DIRECT", the disk's own write rate (4 threads, 1 MiB, preallocated file), half of
which bounds a two-copy design that bypassed the page cache.
Without ``--flush`` the copies end in the page cache for every target alike (nbdcopy's
default); with it the last step of each write is a flush, so disk speed enters the figures.
Every process started is stopped when the bench ends, also on errors, Ctrl-C or SIGTERM.

Part (c), the drive stack alone: a ``Disk`` (``Drive`` on an emulated self-encrypting drive on
a sparse file, software encryption on, so two XTS layers), 256 MiB written and read back in
chunk-aligned 1 MiB and 256 KiB requests, CPU seconds per GiB (best of ``--runs``, a fresh
drive each run). No goal: it isolates the drive layers' cost from the engine and NBD
(`bench/datapath_stack.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import mmap
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# The repository root too, for tests.support.proc (nothing here imports PyKMIP, which
# bench/kmip.py would shadow).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datapath_stack import part_c
from tests.support.proc import SealboxProcess

from sealbox.nbd.workers import default_size
from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import Sealer
from sealbox.storage.crypto import SectorCipher, available_backends

GOAL = 0.25
OPENSSL_SECONDS = 1  # per run; runs alternate with ours


@dataclass(frozen=True)
class Result:
    name: str
    bytes_per_second: float

    @property
    def mb_per_second(self) -> float:
        return self.bytes_per_second / 1e6


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def openssl_xts_speed(seconds: int = OPENSSL_SECONDS) -> Result | None:
    """`openssl speed` at 4 KiB blocks; its table is in 1000s of bytes per second."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    command = [openssl, "speed", "-evp", "aes-256-xts", "-bytes", "4096"]
    command += ["-seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    match = re.search(r"^AES-256-XTS\s+([\d.]+)k\s*$", done.stdout, re.MULTILINE | re.IGNORECASE)
    if match is None:
        raise RuntimeError(f"cannot parse openssl speed output:\n{done.stdout}")
    return Result("openssl speed -evp aes-256-xts (4 KiB)", float(match.group(1)) * 1000)


def sector_cipher_speed(cipher: SectorCipher, size: int, batch: int) -> float:
    """Bytes/s encrypting ``size`` bytes in ``batch``-sector requests with advancing sector
    numbers into a preallocated buffer, which is what a drive write does."""
    source = os.urandom(batch * SECTOR_SIZE)
    target = bytearray(len(source))
    requests = max(1, size // len(source))
    start = _cpu_seconds()
    for request in range(requests):
        cipher.encrypt_into(request * batch, source, target)
    return requests * len(source) / (_cpu_seconds() - start)


def _cpu_seconds() -> float:
    """User CPU time of this process: the divisor `openssl speed` uses (unless -elapsed), so
    both figures mean bytes per CPU-second and other processes' load does not skew the ratio.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def interleaved(args: argparse.Namespace, backends: tuple[str, ...]) -> list[Result]:
    """Best of ``runs`` for each backend and for openssl, measured in turns: on a shared
    machine load comes and goes, and the best run is the one least disturbed by it."""
    ciphers = {f"{b}, 4 KiB units": SectorCipher(Secret(os.urandom(64)), backend=b)
               for b in backends}
    # Drive format 2: 1 MiB XTS data units, so a request is one cipher call per unit.
    ciphers |= {f"{b}, 1 MiB units": SectorCipher(Secret(os.urandom(64)), backend=b,
                                                  unit_size=1 << 20, sector_size=SECTOR_SIZE)
                for b in backends}
    rates: dict[str, list[float]] = {label: [] for label in ciphers}
    reference: list[Result] = []
    for _ in range(args.runs):
        for backend, cipher in ciphers.items():
            rates[backend].append(sector_cipher_speed(cipher, args.size, args.batch))
        measured = openssl_xts_speed(args.openssl_seconds)
        if measured is not None:
            reference.append(measured)
    results = [
        Result(f"SectorCipher[{label}] ({args.batch} x 4 KiB)", max(rates[label]))
        for label in ciphers
    ]
    if reference:
        results.append(max(reference, key=lambda r: r.bytes_per_second))
    return results


def report(results: list[Result], reference: Result | None) -> None:
    for result in results:
        line = f"{result.name:<52} {result.mb_per_second:10.0f} MB/s"
        if reference is not None:
            line += f"   ratio {result.bytes_per_second / reference.bytes_per_second:5.3f}"
        print(line)
    if reference is not None:
        print(f"{reference.name:<52} {reference.mb_per_second:10.0f} MB/s   (reference)")


def part_a(args: argparse.Namespace) -> bool:
    """The sector cipher against openssl; True if the fastest backend meets the goal."""
    print("== (a) sector cipher, AES-256-XTS (best of runs) ==")
    backends = available_backends() if args.all_backends else available_backends()[:1]
    results = interleaved(args, backends)
    reference = results.pop() if len(results) > 2 * len(backends) else None
    report(results, reference)
    if reference is None:
        print("openssl not found: no reference, no ratio")
        return True
    ratio = results[0].bytes_per_second / reference.bytes_per_second
    print(f"goal: ratio >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'} ({ratio:.3f})")
    return ratio >= GOAL


# --- part (b): the NBD data path of a real sealbox --------------------------------------------
MIB = 1 << 20
MIN_COPY_TIMEOUT = 120.0  # seconds; plus a second per 10 MB copied
START_TIMEOUT = 60.0
NODES = 4  # sealbox up's default: 4 nodes x (1 slice + 2 block drives)
BLOCK_DRIVES = NODES * 2


@dataclass(frozen=True)
class Server:
    """An NBD server the bench started: its URI and process (for its CPU time)."""

    uri: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far: with other
        load on the machine, wall-clock rates drift, CPU spent per GiB much less."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Rates:
    write: float  # bytes per second
    read: float


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends SIGTERM when the bench process ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BenchSealbox(SealboxProcess):
    """``SealboxProcess`` whose process also ends when the bench ends, however it ends."""

    def start(self) -> BenchSealbox:
        env = dict(os.environ, SEALBOX_ADMIN_PASSWORD=self.password, PYTHONUNBUFFERED="1")
        self.output = []
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        try:
            self._read_until_up(self.proc.stdout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self


def drive_size(volume: int) -> str:
    """Block drives big enough for two copies of ``volume`` spread over the 8 block drives,
    with a quarter spare for the checksum area and uneven placement; files are sparse."""
    per_drive = 2 * volume // BLOCK_DRIVES
    return f"{max(256, (per_drive * 5 // 4) // MIB + 16)}MiB"


def copy_timeout(size: int) -> float:
    return MIN_COPY_TIMEOUT + size / 10e6


def timed_copy(src: str, dst: str, size: int, flush: bool) -> float:
    cmd = ["nbdcopy", *(["--flush"] if flush else []), src, dst]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, timeout=copy_timeout(size))
    return time.perf_counter() - start


def make_source(path: Path, size: int) -> None:
    """Random bytes (a 16 MiB random pattern repeated: incompressible, cheap to make)."""
    pattern = os.urandom(16 * MIB)
    with path.open("wb") as f:
        for start in range(0, size, len(pattern)):
            f.write(pattern[: min(len(pattern), size - start)])


def _rpc(proc: SealboxProcess, method: str, params: dict[str, object]) -> dict[str, object]:
    envelope = proc.rpc(method, params)
    if "error" in envelope:
        raise RuntimeError(f"{method} failed: {envelope['error']}")
    result: dict[str, object] = envelope["result"]
    return result


@contextlib.contextmanager
def sealbox_export(workdir: Path, size: int, encrypted: bool) -> Iterator[Server]:
    """A running sealbox with one volume of ``size`` bytes."""
    data = workdir / ("sealbox-encrypted" if encrypted else "sealbox-plain")
    extra = [] if encrypted else ["--no-software-encryption"]
    proc = BenchSealbox(data, extra=extra, drive_size=drive_size(size), nodes=NODES)
    try:
        proc.start()
        account = _rpc(proc, "AddAccount", {"username": "bench"})["accountID"]
        _rpc(proc, "CreateVolume", {"name": "bench", "accountID": account, "totalSize": size})
        info = proc.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
        if (info["state"] == "enabled") != encrypted:
            raise RuntimeError(f"software encryption is {info['state']}, wanted {encrypted}")
        assert proc.proc is not None
        yield Server(f"nbd://127.0.0.1:{proc.nbd_port}/bench", proc.proc.pid)
    finally:
        proc.stop()
        shutil.rmtree(data, ignore_errors=True)  # the next target gets the disk space back


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nbdkit_export(workdir: Path, size: int, image_name: str = "nbdkit.img") -> Iterator[Server]:
    """``nbdkit file`` over a sparse image on the same disk as sealbox's drives."""
    image = workdir / image_name
    with image.open("wb") as f:
        f.truncate(size)
    port = _free_port()
    cmd = ["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port),
           "file", str(image)]
    proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nbdkit did not start") from None
                time.sleep(0.05)  # polling a starting daemon; bounded by the deadline
        yield Server(f"nbd://127.0.0.1:{port}/", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        image.unlink(missing_ok=True)


def measure(name: str, target: contextlib.AbstractContextManager[Server], source: Path,
            flush: bool) -> Rates:
    size = source.stat().st_size
    with target as server:
        cpu = server.cpu_seconds()
        write_s = timed_copy(str(source), server.uri, size, flush)
        cpu, write_cpu = server.cpu_seconds(), server.cpu_seconds() - cpu
        read_s = timed_copy(server.uri, "null:", size, flush=False)
        read_cpu = server.cpu_seconds() - cpu
    rates = Rates(size / write_s, size / read_s)
    gib = size / (1 << 30)
    print(f"  {name:<24} write {rates.write / 1e6:6.0f} MB/s ({write_s:6.2f} s, server CPU "
          f"{write_cpu / gib:5.2f} s/GiB)   read {rates.read / 1e6:6.0f} MB/s ({read_s:6.2f} s, "
          f"server CPU {read_cpu / gib:5.2f} s/GiB)", flush=True)
    return rates


def measure_two_copies(root: Path, source: Path, flush: bool) -> float:
    """Write rate (volume bytes per second) of two ``nbdkit file`` servers each written the
    whole source at once by its own ``nbdcopy``: the page-cache work of keeping two copies,
    in C, with no encryption, checksums or metadata. It also pays for a second client, so it
    is a floor that sealbox's design could not pass, not one it should reach."""
    size = source.stat().st_size
    with nbdkit_export(root, size, "copy-a.img") as a, nbdkit_export(root, size, "copy-b.img") as b:
        cmd = ["nbdcopy", *(["--flush"] if flush else []), str(source)]
        start = time.perf_counter()
        copies = [subprocess.Popen([*cmd, server.uri]) for server in (a, b)]
        for copy in copies:
            if copy.wait(timeout=copy_timeout(size)) != 0:
                raise RuntimeError("nbdcopy into nbdkit failed")
        seconds = time.perf_counter() - start
    print(f"  {'nbdkit file, two copies':<24} write {size / seconds / 1e6:6.0f} MB/s "
          f"({seconds:6.2f} s for both)", flush=True)
    return size / seconds


DIRECT_THREADS = 4  # as many writes in flight as sealbox's NBD worker pool has workers


def measure_direct_disk(root: Path, size: int) -> float:
    """Write rate of the disk itself: ``size`` bytes of 1 MiB ``O_DIRECT`` writes from
    :data:`DIRECT_THREADS` threads into a preallocated file, then ``fdatasync``. A design that
    kept its two copies out of the page cache (no page-cache copy, no new pages) would have to
    put both on the disk within the copy, so half this rate bounds it. 0.0 where the file
    system refuses ``O_DIRECT`` (tmpfs)."""
    path = root / "direct.img"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError:
        print(f"  {'disk, O_DIRECT':<24} skipped: the file system refuses O_DIRECT", flush=True)
        return 0.0
    try:
        os.posix_fallocate(fd, 0, size)  # no block allocation inside the timed writes
        count = size // MIB

        def writer(index: int) -> None:
            buf = mmap.mmap(-1, MIB)  # page-aligned, as O_DIRECT needs
            buf.write(os.urandom(MIB))
            view = memoryview(buf)
            for piece in range(index, count, DIRECT_THREADS):
                os.pwrite(fd, view, piece * MIB)
            view.release()
            buf.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(DIRECT_THREADS)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        os.fdatasync(fd)
        seconds = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    print(f"  {'disk, O_DIRECT':<24} write {size / seconds / 1e6:6.0f} MB/s ({seconds:6.2f} s, "
          f"{DIRECT_THREADS} threads, 1 MiB writes, preallocated file)", flush=True)
    return size / seconds


def run_all(size: int, runs: int, workdir: str | None, flush: bool,
            ) -> tuple[dict[str, Rates], float, float]:
    """Best of ``runs`` per target, the targets taken in turns so that load from other
    processes spreads over all of them. Also the best two-copy write rate
    (:func:`measure_two_copies`) and the best direct disk write rate
    (:func:`measure_direct_disk`)."""
    best: dict[str, Rates] = {}
    two_copies = direct = 0.0
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that cleanups run
    try:
        with tempfile.TemporaryDirectory(dir=workdir, prefix="sealbox-datapath-") as tmp:
            root = Path(tmp)
            source = root / "source.bin"
            make_source(source, size)
            targets: dict[str, Callable[[], contextlib.AbstractContextManager[Server]]] = {
                "nbdkit file": lambda: nbdkit_export(root, size),
                "sealbox, encryption off": lambda: sealbox_export(root, size, encrypted=False),
                "sealbox, encryption on": lambda: sealbox_export(root, size, encrypted=True),
            }
            for _ in range(runs):
                for name, make in targets.items():
                    got = measure(name, make(), source, flush)
                    old = best.get(name, Rates(0.0, 0.0))
                    best[name] = Rates(max(old.write, got.write), max(old.read, got.read))
                two_copies = max(two_copies, measure_two_copies(root, source, flush))
                direct = max(direct, measure_direct_disk(root, size))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return best, two_copies, direct


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


ENCRYPTION_GOAL = 0.7  # encryption on / off
NBDKIT_GOAL = 0.3  # encrypted sealbox / nbdkit file


def part_b(args: argparse.Namespace) -> bool:
    """nbdcopy into and out of real sealbox volumes and nbdkit; True if both goals are met."""
    if shutil.which("nbdcopy") is None or shutil.which("nbdkit") is None:
        print("(b) skipped: nbdcopy and nbdkit are needed (Debian: libnbd-bin, nbdkit)")
        return False
    size = -(-args.size // MIB) * MIB  # volumes are whole MiB
    print(f"== (b) nbdcopy {size / MIB:.0f} MiB through NBD, best of {args.nbd_runs} ==")
    # The servers import the same installed package as this script.
    tokens = "C extension" if Sealer(None).native else "Python (the C extension is not built)"
    print(f"  sector tokens: {tokens}; NBD workers: {default_size()}")
    best, two_copies, direct = run_all(size, args.nbd_runs, args.dir, args.flush)
    kit, off, on = (best[n] for n in
                    ("nbdkit file", "sealbox, encryption off", "sealbox, encryption on"))
    ok = True
    for what, ratio_enc, ratio_kit, ratio_off in (
        ("write", on.write / off.write, on.write / kit.write, off.write / kit.write),
        ("read", on.read / off.read, on.read / kit.read, off.read / kit.read),
    ):
        met = ratio_enc >= ENCRYPTION_GOAL and ratio_kit >= NBDKIT_GOAL
        ok = ok and met
        print(f"  {what:<5}  on/off {ratio_enc:5.2f}x (goal {ENCRYPTION_GOAL})   "
              f"on/nbdkit {ratio_kit:5.2f}x (goal {NBDKIT_GOAL})   off/nbdkit "
              f"{ratio_off:5.2f}x   {'met' if met else 'NOT met'}")
    print(f"  write  on/two-copy nbdkit {on.write / two_copies:5.2f}x   two-copy nbdkit/nbdkit "
          f"{two_copies / kit.write:5.2f}x   (no goal: what two page-cache copies leave)")
    if direct:
        print(f"  write  two copies straight to disk at most {direct / 2 / kit.write:5.2f}x "
              f"nbdkit   (no goal: half the disk's O_DIRECT rate, what bypassing the page "
              f"cache leaves)")
    return ok


PARTS: dict[str, Callable[[argparse.Namespace], bool]] = {"a": part_a, "b": part_b,
                                                          "c": part_c}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"),
                        help="bytes per cipher run (a) and per copy (b); K/M/G suffixes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--openssl-seconds", type=int, default=OPENSSL_SECONDS)
    parser.add_argument("--batch", type=int, default=64, help="sectors per request")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument("--parts", default="".join(PARTS),
                        help="which parts to run, e.g. 'ab' or 'a,b'")
    parser.add_argument("--nbd-runs", type=int, default=1, help="(b): runs per target, best kept")
    parser.add_argument("--dir", default=None, help="(b): where drives and images go ($TMPDIR)")
    parser.add_argument("--flush", action="store_true", help="(b): nbdcopy --flush on writes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok = True
    for name in args.parts.replace(",", ""):
        ok = PARTS[name](args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
