"""Boot unlock: power-on to every self-encrypting drive unlocked, against the key server's floor.

One local PyKMIP server (``launch_kms``), one in-process key provider built the way the API
builds it (cluster key pair, CSR signed by the server's CA, key server, provider). The largest
size's drive authentication keys (AKs) are registered once, through the production
``AuthKeys.create`` (KMIP Secret Data, activated), and each drive file (1 MiB, sparse) is a real
self-encrypting drive (``Disk.create``) whose locking is enabled with its AK; smaller sizes use
the first N drives. For each N, in ``--rounds`` interleaved rounds (the order rotates, so a
change of load hits every measure alike):

* sealbox: what ``StorageService.start`` does - ``Disk.open`` of every drive (comes up
  locked), then ``sealbox.cluster.storage.unlock_disks`` (``AuthKeys.fetch_all`` over the
  provider, each drive unlocked once); timed from the first power-on to the last unlock.
* floor: N / the Get rate of a tight loop of KMIP Gets of those AKs on ONE persistent
  connection (already open), i.e. what the key server serves one client at best.
* naive: per drive in sequence, a NEW KMIP connection, Get, power on, unlock.

Prints the median of the rounds per N (sizes under 100 drives, the noisiest, run three times
the rounds), sealbox/floor (goal <= 1.25) and naive/sealbox (goal >= 3) with PASS/FAIL, and
exits 1 if a goal fails. Absolute figures drift with the load on the machine; the ratios are
the result.

    .venv/bin/python bench/boot.py [--sizes 16,256,1024] [--rounds 3] [--tmp /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Python puts this script's directory first on sys.path, and bench/kmip.py would then shadow
# PyKMIP's "kmip" package when sealbox imports it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sealbox.cluster import authkeys  # noqa: E402
from sealbox.cluster.audit import AuditLog  # noqa: E402
from sealbox.cluster.authkeys import AuthKeys  # noqa: E402
from sealbox.cluster.keyservers import (  # noqa: E402
    PROVIDERS,
    SERVERS,
    KeyServerStore,
    ServerChange,
    Timeouts,
)
from sealbox.cluster.storage import StartOutcome, unlock_disks  # noqa: E402
from sealbox.cluster.trust import TrustService  # noqa: E402
from sealbox.daemon import raise_open_file_limit  # noqa: E402
from sealbox.kmip import KmipClient  # noqa: E402
from sealbox.kmip.certs import KeyType, Subject  # noqa: E402
from sealbox.kmip.config import KmipEndpoint  # noqa: E402
from sealbox.kms import server as kms_server  # noqa: E402
from sealbox.kms.testing import launch_kms  # noqa: E402
from sealbox.storage.disk import Disk  # noqa: E402
from sealbox.store.base import Doc  # noqa: E402
from sealbox.store.sqlite import SqliteStore  # noqa: E402

DRIVE_SIZE = 1 << 20
SETUP_THREADS = 4  # AK registration and drive creation: setup only, never timed
FLOOR_MIN_SECONDS = 1.0  # a floor over a few ms of Gets would be mostly noise
SMALL = 100  # sizes below this run three times the rounds
GOAL_FLOOR = 1.25
GOAL_NAIVE = 3.0


class Rig:
    """The store, the provider on the key server and the drives, made once."""

    def __init__(self, root: Path, kms_port: int, ca_pem: bytes, kms_dir: Path) -> None:
        data = root / "data"
        data.mkdir(mode=0o700)
        self.drive_dir = root / "drives"
        self.drive_dir.mkdir()
        self.store = SqliteStore(data / "sealbox.db")
        trust = TrustService(self.store, data / "keys", KeyType.RSA_2048)
        trust.create_key_pair(Subject("sealbox-boot-bench"), [])
        cert = kms_server.sign_csr(kms_dir, trust.csr()).decode()
        self.keyservers = KeyServerStore(self.store, trust, Timeouts())
        with self.store.write() as txn:
            server = self.keyservers.new_server(txn, ServerChange(
                name="bench-ks", hostnames=["127.0.0.1"], port=kms_port,
                ca_pem=ca_pem.decode(), client_cert_pem=cert))
            provider = self.keyservers.new_provider(txn, "bench")
            # What AddKeyServerToProviderKmip stores (its connection test is the Gets below).
            server["keyProviderID"] = provider["keyProviderID"]
            provider["keyServerIDs"] = [server["keyServerID"]]
            txn.put(SERVERS, server["keyServerID"], server)
            txn.put(PROVIDERS, provider["keyProviderID"], provider)
            self.provider_id: int = provider["keyProviderID"]
            self.endpoint: KmipEndpoint = self.keyservers.provider_endpoints(
                txn, self.provider_id)[0]
        self.aks = AuthKeys(self.store, data / "keys" / "ak", self.keyservers,
                            AuditLog(self.store))
        self.docs: list[Doc] = []

    def provision(self, count: int) -> None:
        """``count`` locked drives, each with its own AK on the key server (Secret Data)."""

        def one(drive_id: int) -> Doc:
            rec, ak = self.aks.create(drive_id, self.aks.plan(self.provider_id))
            path = self.drive_dir / f"drive-{drive_id:04d}"
            with Disk.create(path, DRIVE_SIZE) as disk:
                assert disk.sed is not None
                disk.sed.enable_locking(ak)
            return {"driveID": drive_id, "path": str(path), "ak": rec}

        with ThreadPoolExecutor(SETUP_THREADS) as pool:
            self.docs = list(pool.map(one, range(1, count + 1)))

    def close(self) -> None:
        self.store.close()


def sealbox_boot(rig: Rig, docs: list[Doc]) -> float:
    """StorageService.start's unlock path: power on every drive, then the production
    ``unlock_disks`` (fetch_all over the provider, one unlock per drive)."""
    disks: dict[int, Disk] = {}
    try:
        t0 = time.perf_counter()
        for doc in docs:
            disks[doc["driveID"]] = Disk.open(doc["path"])
        outcome = StartOutcome()
        unlock_disks(rig.aks, disks, docs, outcome)
        elapsed = time.perf_counter() - t0
        _check_unlocked(disks, outcome)
        return elapsed
    finally:
        for disk in disks.values():
            disk.close()


def naive_boot(rig: Rig, docs: list[Doc]) -> float:
    """Per drive, in sequence: power on, a new KMIP connection, Get, unlock."""
    disks: dict[int, Disk] = {}
    try:
        t0 = time.perf_counter()
        for doc in docs:
            with KmipClient(rig.endpoint) as client:
                ak = client.get(doc["ak"]["kmipUID"])
                disk = disks[doc["driveID"]] = Disk.open(doc["path"])
            disk.unlock(ak)
        elapsed = time.perf_counter() - t0
        _check_unlocked(disks, StartOutcome())
        return elapsed
    finally:
        for disk in disks.values():
            disk.close()


def floor_rate(rig: Rig, docs: list[Doc]) -> float:
    """Gets per second of a tight loop on one persistent, already open connection, cycling
    through these drives' AKs: at least len(docs) Gets and FLOOR_MIN_SECONDS."""
    uids = [doc["ak"]["kmipUID"] for doc in docs]
    with KmipClient(rig.endpoint) as client:
        client.get(uids[0])  # connect first: the floor is the steady Get rate
        count = 0
        t0 = time.perf_counter()
        while True:
            for uid in uids:
                client.get(uid)
            count += len(uids)
            elapsed = time.perf_counter() - t0
            if elapsed >= FLOOR_MIN_SECONDS:
                return count / elapsed


def _check_unlocked(disks: dict[int, Disk], outcome: StartOutcome) -> None:
    if outcome.invalid or outcome.unavailable or any(d.locked for d in disks.values()):
        raise RuntimeError(f"not every drive unlocked: invalid {sorted(outcome.invalid)}, "
                           f"unavailable {sorted(outcome.unavailable)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16,256,1024", help="drive counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--tmp", default="/var/tmp", help="where the temporary dir goes")
    args = parser.parse_args()
    raise_open_file_limit()  # as `sealbox up` does: 1,024 drive files stay open
    sizes = sorted(int(s) for s in args.sizes.split(","))

    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); "
          f"FETCH_CONNECTIONS = {authkeys.FETCH_CONNECTIONS}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="sealbox-bench-boot-", dir=args.tmp))
    try:
        kms = launch_kms(root / "kms")
        try:
            rig = Rig(root, kms.port, kms.ca_pem, kms.directory)
            try:
                t0 = time.perf_counter()
                rig.provision(sizes[-1])
                print(f"setup: {sizes[-1]} AKs registered and {sizes[-1]} locked drives "
                      f"of {DRIVE_SIZE >> 20} MiB in {time.perf_counter() - t0:.1f} s",
                      flush=True)
                results = [run_size(rig, n, args.rounds) for n in sizes]
            finally:
                rig.close()
        finally:
            kms.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return report(results, args.rounds)


Result = tuple[int, float, float, float]  # N, sealbox s, floor s, naive s (medians)


def run_size(rig: Rig, n: int, rounds: int) -> Result:
    docs = rig.docs[:n]
    if n < SMALL:
        rounds *= 3  # a round takes under 2 s, and a few ms of noise is a large share of it
    measures: dict[str, Callable[[], float]] = {
        "sealbox": lambda: sealbox_boot(rig, docs),
        "floor": lambda: n / floor_rate(rig, docs),
        "naive": lambda: naive_boot(rig, docs),
    }
    seen: dict[str, list[float]] = {name: [] for name in measures}
    order = list(measures)
    for r in range(rounds):
        for name in order[r % 3:] + order[:r % 3]:
            seen[name].append(measures[name]())
    line = "  ".join(f"{k} " + "/".join(f"{v:.3f}" for v in vs) for k, vs in seen.items())
    print(f"{n:5d} drives, seconds per round: {line}", flush=True)
    return (n, statistics.median(seen["sealbox"]), statistics.median(seen["floor"]),
            statistics.median(seen["naive"]))


def report(results: list[Result], rounds: int) -> int:
    print(f"\nmedians ({rounds} rounds, {rounds * 3} below {SMALL} drives)\n"
          f"{'':19} sealbox s  floor s  naive s  sealbox/floor  naive/sealbox")
    failed = False
    for n, sealbox, floor, naive in results:
        r_floor, r_naive = sealbox / floor, naive / sealbox
        ok_floor, ok_naive = r_floor <= GOAL_FLOOR, r_naive >= GOAL_NAIVE
        failed |= not (ok_floor and ok_naive)
        print(f"{n:5d} drives {'':13} {sealbox:8.3f} {floor:8.3f} {naive:8.3f}  "
              f"{r_floor:5.2f} {'PASS' if ok_floor else 'FAIL':4}     "
              f"{r_naive:6.2f} {'PASS' if ok_naive else 'FAIL'}")
    print(f"goals: sealbox/floor <= {GOAL_FLOOR}, naive/sealbox >= {GOAL_NAIVE:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
