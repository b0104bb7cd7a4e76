"""Rekey benchmark: RekeySoftwareEncryptionAtRestMasterKey wall time against drives and data.

    .venv/bin/python bench/rekey.py [--quick] [--drives 10,100,1000] [--repeat 5]
                                    [--data-rounds 15] [--small-gib 1] [--big-gib 10]
                                    [--no-data] [--profile] [--tmp DIR]

Everything runs in this process, driven through ``sealbox.api.dispatch.handle`` as an HTTP
request would be, against one local PyKMIP key server (``launch_kms``):

1. For 10, 100 and 1,000 drives (5x2, 10x10, 20x50 nodes x drives-per-node, one slice drive
   per node, 64 MiB sparse drive files) a fresh cluster is created, a key pair made, its CSR
   signed by the key server's CA, a key server and provider created; then one rekey
   internal -> external and ``--repeat`` rekeys external -> external (same provider).
2. Two 10-drive clusters with the same drives (sized for two copies of ``--big-gib``) get a
   volume holding ``--small-gib`` and ``--big-gib`` (written in 4 MiB pieces through the volume
   engine, then flushed and ``sync``-ed so that the rekey's header fsyncs do not also pay for
   the data writes); then ``--data-rounds`` external -> external rekeys of each, alternating,
   so that changes of load on the machine hit both alike.

A rekey is timed from the RekeySoftwareEncryptionAtRestMasterKey call until its job is
complete (``jobs.peek`` polled every ms; the result is then checked with GetAsyncResult).
KMIP operations are counted by kind at the adapter (``KmipConnection.call``, through which
every ``KmipClient`` operation goes), with new TLS connections, drive fsyncs and configuration
store write transactions, all inside the window of one rekey.

Goals: 1,000-drive rekey median <= 3 s; best time(big data) / best time(small data) <= 1.1
(medians printed too); KMIP operations per rekey the same for every drive count and data size.
Before the largest cluster's profile the filesystem's fsync floor is measured (1,000 x 4 KiB
pwrite + fsync on separate files). ``--profile`` (or a 1,000-drive median over the goal) runs
one more rekey of the largest cluster under cProfile, inside the job's thread, and prints where
its time goes. Exit status 1 if a goal fails. Temporary directories and the key server are
removed at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/kmip.py would shadow PyKMIP's "kmip" package: drop this directory from sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent / "src"))
sys.path.insert(0, str(_HERE.parent))  # for bench.rekey_counting (a package path: no shadowing)

from bench.rekey_counting import COUNTER, Counts  # noqa: E402

from sealbox.api import dispatch  # noqa: E402
from sealbox.api.registry import load_all  # noqa: E402
from sealbox.cluster.admins import Principal  # noqa: E402
from sealbox.cluster.rekey import REKEY  # noqa: E402
from sealbox.cluster.runtime import Cluster  # noqa: E402
from sealbox.cluster.sear import EXTERNAL  # noqa: E402
from sealbox.config import Settings  # noqa: E402
from sealbox.kms import server as kms_server  # noqa: E402
from sealbox.kms.testing import RunningKms, launch_kms  # noqa: E402
from sealbox.secrets import Secret  # noqa: E402

GIB = 1 << 30
PIECE = 4 << 20  # bytes per volume write
LAYOUTS = {10: (5, 2), 100: (10, 10), 1000: (20, 50)}  # drives -> (nodes, drives per node)
SMALL_DRIVE = 64 << 20
GOAL_SECONDS = 3.0  # the 1,000-drive rekey
GOAL_RATIO = 1.1  # big data / small data
REKEY_TIMEOUT = 120.0
POLL = 0.001
PASSWORD = b"rekey-bench-password"


# --- one cluster, driven through the API ------------------------------------------------------
@dataclass
class Rekey:
    label: str
    drives: int
    data_gib: float
    seconds: float  # call to job complete
    call_seconds: float  # the API call alone (validation, key server test, job recorded)
    counts: Counts


class Bench:
    """One in-process cluster with a provider on the key server."""

    def __init__(self, root: Path, kms: RunningKms, drives: int, drive_size: int) -> None:
        nodes, per_node = LAYOUTS[drives]
        self.root, self.kms, self.drives = root, kms, drives
        self.data_gib = 0.0
        settings = Settings(data_dir=root / "data", nodes=nodes, drives_per_node=per_node,
                            drive_size=drive_size, admin_password=Secret(PASSWORD),
                            monitor_interval=3600.0, key_check_interval=3600.0)
        self.cluster = Cluster.open(settings)
        try:
            self.cluster.first_start()
            self.cluster.start()
            if not self.cluster.unlocker.unlocked.wait(60):
                raise RuntimeError("the drives did not unlock within 60 s")
            who = self.cluster.admins.authenticate("admin", Secret(PASSWORD))
            if who is None:
                raise RuntimeError("the admin password was not accepted")
            self.who: Principal = who
            self.provider = self._provider()
        except BaseException:
            self.cluster.close()
            raise

    def api(self, method: str, **params: Any) -> Any:
        body = json.dumps({"method": method, "params": params, "id": 1}).encode()
        env = dispatch.handle(self.cluster, self.who, body)
        if "error" in env:
            raise RuntimeError(f"{method}: {env['error']}")
        return env["result"]

    def _provider(self) -> int:
        self.api("CreatePublicPrivateKeyPair", commonName=f"rekey-bench-{self.drives}")
        csr = self.api("GetClientCertificateSignRequest")["clientCertificateSignRequest"]
        cert = kms_server.sign_csr(self.kms.directory, csr).decode()
        sid = self.api("CreateKeyServerKmip", kmipCaCertificate=self.kms.ca_pem.decode(),
                       kmipClientCertificate=cert, kmipKeyServerHostnames=["127.0.0.1"],
                       kmipKeyServerName="bench-ks", kmipKeyServerPort=self.kms.port,
                       )["kmipKeyServer"]["keyServerID"]
        pid: int = self.api("CreateKeyProviderKmip", keyProviderName="bench"
                            )["kmipKeyProvider"]["keyProviderID"]
        self.api("AddKeyServerToProviderKmip", keyProviderID=pid, keyServerID=sid)
        return pid

    def rekey(self, note: str = "") -> Rekey:
        with self.cluster.store.read() as txn:
            current = self.cluster.sear.current_key(txn)
        source = "external" if current and current["keyManagementType"] == EXTERNAL \
            else "internal"
        label = f"{source} -> external{note}"
        os.sync()  # nothing of ours left to write back while the rekey fsyncs
        before = COUNTER.snapshot()
        t0 = time.perf_counter()
        handle = self.api(REKEY, keyManagementType="External",
                          keyProviderID=self.provider)["asyncHandle"]
        t_call = time.perf_counter()
        while True:
            job = self.cluster.jobs.peek(handle)
            if job is not None and job["status"] == "complete":
                break
            if time.perf_counter() - t0 > REKEY_TIMEOUT:
                raise RuntimeError(f"the rekey did not complete within {REKEY_TIMEOUT:g} s")
            time.sleep(POLL)
        t_done = time.perf_counter()
        counts = COUNTER.since(before)
        result = self.api("GetAsyncResult", asyncHandle=handle)
        if "error" in result or result.get("result", {}).get("state") != "Ready":
            raise RuntimeError(f"the rekey failed: {result}")
        return Rekey(label, self.drives, self.data_gib, t_done - t0, t_call - t0, counts)

    def close(self) -> None:
        self.cluster.close()


@dataclass
class Profiled:
    """Wraps the rekey job handler so that the next run is profiled in the job's thread."""

    handler: Callable[[Any], Any]
    profile: cProfile.Profile = field(default_factory=cProfile.Profile)

    def __call__(self, ctx: Any) -> Any:
        self.profile.enable()
        try:
            return self.handler(ctx)
        finally:
            self.profile.disable()

    def report(self, top: int = 22) -> str:
        out = io.StringIO()
        stats = pstats.Stats(self.profile, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        return out.getvalue()


def fsync_floor(tmp: Path, files: int = 1000) -> tuple[float, float]:
    """Seconds for ``files`` header-sized writes + fsync, one file each, in series and on 16
    threads, on the clusters' filesystem: the floor under a rekey's per-drive fsyncs."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp / "fsync-floor"
    root.mkdir()
    fds = []
    try:
        for i in range(files):
            fd = os.open(root / f"f{i}", os.O_RDWR | os.O_CREAT, 0o600)
            fds.append(fd)
            os.ftruncate(fd, SMALL_DRIVE)
        os.sync()
        block = os.urandom(4096)

        def one(fd: int) -> None:
            os.pwrite(fd, block, 0)
            os.fsync(fd)

        t0 = time.perf_counter()
        for fd in fds:
            one(fd)
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, fds))
        return serial, time.perf_counter() - t0
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(root, ignore_errors=True)


# --- the parts --------------------------------------------------------------------------------
def drive_scaling(tmp: Path, kms: RunningKms, counts: list[int], repeat: int,
                  profile: bool) -> tuple[list[Rekey], str]:
    results: list[Rekey] = []
    report = ""
    for n in counts:
        root = tmp / f"drives-{n}"
        t0 = time.perf_counter()
        bench = Bench(root, kms, n, SMALL_DRIVE)
        try:
            print(f"  {n} drives: cluster ready in {time.perf_counter() - t0:.1f} s", flush=True)
            results.append(_show(bench.rekey()))  # from the internal key
            for _ in range(repeat):
                results.append(_show(bench.rekey()))
            if n != max(counts):
                continue
            serial, threaded = fsync_floor(tmp, n)
            report = (f"{n} x (4 KiB pwrite + fsync), one file each, on this filesystem: "
                      f"{serial * 1000:.0f} ms in series, {threaded * 1000:.0f} ms on 16 "
                      "threads\n")
            print(f"  {report}", end="", flush=True)
            if profile or statistics.median(r.seconds for r in results[-repeat:]) > GOAL_SECONDS:
                prof = Profiled(bench.cluster.rekey._run)
                bench.cluster.jobs.register(REKEY, prof)
                _show(bench.rekey(" (under cProfile)"))
                report += prof.report()
        finally:
            bench.close()
            shutil.rmtree(root, ignore_errors=True)
    return results, report


def data_scaling(tmp: Path, kms: RunningKms, small_gib: float, big_gib: float,
                 rounds: int) -> list[Rekey]:
    """Two 10-drive clusters with the same drives, one holding ``small_gib``, the other
    ``big_gib``; their rekeys alternate, so that changes of load hit both alike."""
    drives = 10
    nodes, per_node = LAYOUTS[drives]
    block_drives = nodes * (per_node - 1)
    # Two copies of big_gib over the block drives, with room for uneven placement.
    drive_size = int(2 * big_gib * GIB / block_drives * 1.5) + GIB
    drive_size -= drive_size % (1 << 20)
    benches: list[Bench] = []
    results: list[Rekey] = []
    try:
        for gib in (small_gib, big_gib):
            bench = Bench(tmp / f"data-{gib:g}", kms, drives, drive_size)
            benches.append(bench)
            _show(bench.rekey())  # internal -> external, before any data
            _fill(bench, gib)
        for _ in range(rounds):
            for bench in benches:
                results.append(_show(bench.rekey()))
    finally:
        for bench in benches:
            bench.close()
            shutil.rmtree(bench.root, ignore_errors=True)
    return results


def _fill(bench: Bench, gib: float) -> None:
    """Write ``gib`` into a new volume in 4 MiB pieces through the volume engine, sync, and
    check that the last piece reads back."""
    account = bench.api("AddAccount", username="bench")["accountID"]
    vid = bench.api("CreateVolume", name="bench", accountID=account,
                    totalSize=int(gib * GIB) + GIB)["volumeID"]
    volume = bench.cluster.storage.require_engine().open_volume(vid)
    pattern = bytearray(os.urandom(PIECE))
    end = max(PIECE, int(gib * GIB) // PIECE * PIECE)
    t0 = time.perf_counter()
    for offset in range(0, end, PIECE):
        pattern[:8] = offset.to_bytes(8, "little")  # every piece differs
        volume.write(offset, bytes(pattern))
    volume.flush()
    os.sync()
    took = time.perf_counter() - t0
    if volume.read(end - PIECE, PIECE) != bytes(pattern):
        raise RuntimeError("the last piece written reads back different")
    bench.data_gib = end / GIB
    print(f"  10 drives: {bench.data_gib:g} GiB stored in {took:.1f} s "
          f"({end / took / 1e6:.0f} MB/s, synced)", flush=True)


def _show(r: Rekey) -> Rekey:
    print(f"    {r.label:38} {r.seconds * 1000:8.1f} ms  (call {r.call_seconds * 1000:.1f} ms)"
          f"  kmip {r.counts.ops()} ops {r.counts.kmip_seconds * 1000:.0f} ms, "
          f"{r.counts.fsyncs} fsyncs {r.counts.fsync_seconds * 1000:.0f} ms", flush=True)
    return r


# --- the report ---------------------------------------------------------------------------------
def table(rows: list[Rekey]) -> None:
    head = (f"{'drives':>6} {'data':>8} {'rekey':18} {'wall ms':>8} {'call ms':>7} "
            f"{'kmip ms':>7} {'fsync ms':>8} {'fsyncs':>6} {'store':>5} {'conns':>5} "
            f"{'kmip':>4}  KMIP operations by kind")
    print(head)
    print("-" * len(head))
    for r in rows:
        c = r.counts
        print(f"{r.drives:6d} {r.data_gib:6.2f} G {_short(r.label):18} {r.seconds * 1000:8.1f} "
              f"{r.call_seconds * 1000:7.1f} {c.kmip_seconds * 1000:7.1f} "
              f"{c.fsync_seconds * 1000:8.1f} {c.fsyncs:6d} {c.store_writes:5d} "
              f"{c.connections:5d} {c.ops():4d}  {c.kinds()}")


def _short(label: str) -> str:
    return label.replace(" -> ", "->")


def _median(rows: list[Rekey]) -> float:
    return statistics.median(r.seconds for r in rows)


def goals(drive_rows: list[Rekey], data_rows: list[Rekey], small: float, big: float) -> bool:
    ok = True
    ext = [r for r in drive_rows + data_rows if r.label == "external -> external"]

    def line(passed: bool, text: str) -> None:
        nonlocal ok
        ok &= passed
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")

    print("\nexternal -> external rekey, median and best:")
    groups = sorted({(r.drives, r.data_gib) for r in ext})
    for drives, gib in groups:
        rows = [r for r in ext if (r.drives, r.data_gib) == (drives, gib)]
        print(f"  {drives:5d} drives, {gib:5.2f} GiB stored: median {_median(rows) * 1000:8.1f} ms,"
              f" best {min(r.seconds for r in rows) * 1000:8.1f} ms  ({len(rows)} rekeys)")
    print("\ngoals:")
    if 1000 in {r.drives for r in drive_rows}:
        t = _median([r for r in drive_rows if r.drives == 1000 and r in ext])
        line(t <= GOAL_SECONDS, f"1,000 drives: median {t:.2f} s <= {GOAL_SECONDS:g} s")
    if data_rows:
        lo = [r.seconds for r in data_rows if r.data_gib <= small + 1e-9]
        hi = [r.seconds for r in data_rows if r.data_gib > small + 1e-9]
        ratio = min(hi) / min(lo)
        line(ratio <= GOAL_RATIO,
             f"data independence, best of {len(hi)} alternating: {big:g} GiB "
             f"{min(hi) * 1000:.1f} ms / {small:g} GiB {min(lo) * 1000:.1f} ms = {ratio:.2f} "
             f"<= {GOAL_RATIO:g} (medians: {statistics.median(hi) / statistics.median(lo):.2f})")
        work = {(r.counts.fsyncs, r.counts.store_writes, r.counts.ops()) for r in data_rows}
        line(len(work) == 1, "work per rekey the same at both sizes (fsyncs, store writes, "
             f"KMIP operations): {sorted(work)}")
    for label in ("internal -> external", "external -> external"):
        rows = [r for r in drive_rows + data_rows if r.label == label]
        kinds = {tuple(sorted(r.counts.kmip.items())) for r in rows}
        if rows:
            line(len(kinds) == 1, f"KMIP operations per {label} rekey constant over "
                 f"{len(rows)} rekeys: " + " | ".join(
                     " ".join(f"{k}={v}" for k, v in sorted(kind)) for kind in sorted(kinds)))
    return ok


# --- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="0.25 and 2.5 GiB stored instead of 1 and 10")
    ap.add_argument("--drives", default="10,100,1000",
                    help=f"comma-separated drive counts, of {sorted(LAYOUTS)}")
    ap.add_argument("--repeat", type=int, default=5,
                    help="external -> external rekeys per measurement (default 5)")
    ap.add_argument("--data-rounds", type=int, default=15,
                    help="alternating rekeys of the small- and big-data clusters (default 15)")
    ap.add_argument("--small-gib", type=float)
    ap.add_argument("--big-gib", type=float)
    ap.add_argument("--no-data", action="store_true", help="skip the data-size part")
    ap.add_argument("--profile", action="store_true",
                    help="profile one more rekey of the largest cluster even within the goal")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the clusters live")
    args = ap.parse_args(argv)
    small = args.small_gib if args.small_gib is not None else (0.25 if args.quick else 1.0)
    big = args.big_gib if args.big_gib is not None else (2.5 if args.quick else 10.0)
    counts = [int(x) for x in args.drives.split(",") if x.strip()]
    bad_counts = any(n not in LAYOUTS for n in counts)
    if bad_counts or min(args.repeat, args.data_rounds) < 1 or not 0 < small < big:
        ap.error(f"--drives must be of {sorted(LAYOUTS)}, --repeat and --data-rounds >= 1, "
                 "0 < small < big")

    # SIGTERM unwinds like Ctrl-C, so the key server and the temporary files go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    load_all()
    free = shutil.disk_usage(args.tmp).free
    need = int(2 * (small + big) * GIB * 1.1) + 2 * GIB
    if not args.no_data and free < need:
        print(f"{args.tmp} has {free / GIB:.1f} GiB free; {small:g} + {big:g} GiB stored "
              f"twice need about {need / GIB:.1f} GiB: use --big-gib or --quick",
              file=sys.stderr)
        return 2
    print(f"rekey bench: drives {counts}, data {small:g} vs {big:g} GiB, repeat {args.repeat}, "
          f"load average {os.getloadavg()[0]:.2f}, {free / GIB:.0f} GiB free in {args.tmp}",
          flush=True)

    started = time.perf_counter()
    with _workspace(Path(args.tmp)) as tmp:
        kms = launch_kms(tmp / "kms")
        COUNTER.install()
        try:
            drive_rows, report = drive_scaling(tmp, kms, counts, args.repeat, args.profile)
            data_rows = [] if args.no_data else data_scaling(tmp, kms, small, big,
                                                              args.data_rounds)
        finally:
            COUNTER.uninstall()
            kms.stop()
    print()
    table(drive_rows + data_rows)
    ok = goals(drive_rows, data_rows, small, big)
    if report:
        print(f"\nfsync floor and cProfile of one {max(counts)}-drive rekey job (its thread):")
        print(report)
    print(f"\nbench took {time.perf_counter() - started:.0f} s; load average "
          f"{os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


class _workspace:
    """A temporary directory removed on the way out, whatever happens."""

    def __init__(self, parent: Path) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="sealbox-rekey-bench-", dir=parent))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
