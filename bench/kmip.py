"""KMIP Get through the adapter's reused connection vs a new PyKMIP connection per operation.

One local PyKMIP server (``sealbox kms``) on loopback, one key, two phases of at most
``PHASE_SECONDS`` each. Prints p50 latency and ops/s of each phase and their ratio; absolute
figures drift between machines, the ratio is the result (see PERF-NOTES.md).

    .venv/bin/python bench/kmip.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# This file is named kmip.py, and Python puts its directory first on sys.path: without this,
# "import kmip" (PyKMIP) would import this script instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

# sealbox.kmip imports PyKMIP with its deprecation warnings silenced, so it comes first.
from sealbox.kmip import KmipClient  # noqa: E402
from sealbox.kms.testing import RunningKms, launch_kms  # noqa: E402

PHASE_SECONDS = 8.0
MAX_OPS = 5000


def measure(op: Callable[[], object]) -> tuple[float, float, int]:
    """(p50 seconds, ops per second, count) of ``op`` run for at most PHASE_SECONDS."""
    op()  # warm-up: first connection, imports, caches
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < PHASE_SECONDS and len(latencies) < MAX_OPS:
        t0 = time.perf_counter()
        op()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return statistics.median(latencies), len(latencies) / elapsed, len(latencies)


def pykmip_per_op(kms: RunningKms, workdir: Path, uid: str) -> Callable[[], object]:
    """A Get through PyKMIP's own client, opening (and closing) a connection each time."""
    from kmip.pie.client import ProxyKmipClient

    cert, key = kms.client_credentials("bench")
    paths = {"cert": workdir / "client.pem", "key": workdir / "client.key"}
    paths["cert"].write_bytes(cert)
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.reveal())
    ca_path = kms.directory / "ca.pem"

    def op() -> object:
        with ProxyKmipClient(
            hostname=kms.host,
            port=kms.port,
            cert=str(paths["cert"]),
            key=str(paths["key"]),
            ca=str(ca_path),
            ssl_version="PROTOCOL_SSLv23",
            config_file=os.devnull,
        ) as client:
            return client.get(uid) is not None  # never str() the object: it prints key bytes

    return op


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sealbox-bench-kmip-") as tmp:
        kms = launch_kms(Path(tmp) / "kms")
        try:
            # The bench identity owns the key: PyKMIP only lets the creator's CN read it.
            with KmipClient(kms.endpoint("bench")) as client:
                uid = client.create_symmetric_key("bench")
                reused = measure(lambda: client.get(uid))
            fresh = measure(pykmip_per_op(kms, Path(tmp), uid))
        finally:
            kms.stop()
    rows = [("adapter, reused connection", reused), ("PyKMIP, new connection per Get", fresh)]
    print(f"{'KMIP Get':34} {'p50 ms':>8} {'ops/s':>8} {'n':>6}")
    for label, (p50, rate, n) in rows:
        print(f"{label:34} {p50 * 1000:8.2f} {rate:8.0f} {n:6d}")
    print(
        f"ratio (reused / per-op): {reused[1] / fresh[1]:.2f}x ops/s, "
        f"{fresh[0] / reused[0]:.2f}x lower p50"
    )


if __name__ == "__main__":
    main()
