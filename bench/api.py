"""Element API throughput: a real ``sealbox up`` against the same HTTP stack answering a constant.

    .venv/bin/python bench/api.py [--seconds 8] [--clients 2] [--rounds 2]

Starts a real ``sealbox up`` (``tests.support.proc.SealboxProcess``, fresh data dir) and, in
another process, a bare aiohttp app with sealbox's TLS setup (``ensure_certificate`` /
``server_context``) whose POST handler returns a fixed JSON body. Client processes then call
each target over keep-alive HTTPS (one ``requests.Session`` with Basic auth per client, the body
the SDK sends) for ``--seconds`` each, in interleaved rounds, and the bench prints calls/s
for the constant, ``GetClusterInfo`` and ``ListDrives``, and sealbox/constant ratios. Absolute
numbers drift
between machines and the clients share the CPUs with the servers; the ratio is the figure to
watch (goal: >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Not bench/ itself (Python puts the script's folder first): bench/kmip.py would shadow PyKMIP.
sys.path[:] = [str(ROOT), str(ROOT / "src")] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
]

GOAL = 0.5
WARMUP = 0.5  # seconds per measurement before counting: connections made, caches warm
START_TIMEOUT = 30.0
CONSTANT_ROW = "constant (same aiohttp + TLS)"
CONSTANT = json.dumps({"id": 1, "result": {"constant": True}}).encode()


# --- the constant server (runs in its own process, like sealbox) ------------------------------
def serve_constant(port: int, tls_dir: Path) -> None:
    import asyncio

    from aiohttp import web

    from sealbox.api.server import MAX_BODY
    from sealbox.api.tls import ensure_certificate, server_context

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CONSTANT, content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/json-rpc/{version}", answer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        ctx = server_context(*ensure_certificate(tls_dir, "127.0.0.1"))
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        print("ready", flush=True)
        await asyncio.Event().wait()  # until the bench terminates this process

    asyncio.run(main())


def start_constant(tls_dir: Path) -> tuple[subprocess.Popen[str], int]:
    from tests.support.proc import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-constant", str(port), "--tls-dir", str(tls_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until "ready" or the process dies (empty line)
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"the constant server did not start (exit {proc.wait()})")
    return proc, port


# --- clients ------------------------------------------------------------------------------------
def client(url: str, auth: tuple[str, str], method: str, warmup: float, seconds: float,
           out: Any) -> None:
    """One keep-alive session calling ``method`` as fast as it can; sends back its count."""
    import requests
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    calls = failures = 0
    with requests.Session() as s:
        s.auth = auth
        start = time.monotonic()
        count_from, stop = start + warmup, start + warmup + seconds
        req_id = 0
        while (now := time.monotonic()) < stop:
            req_id += 1
            body = json.dumps({"method": method, "id": req_id, "params": {}})
            r = s.post(url, data=body, verify=False, timeout=30)
            if now < count_from:
                continue
            calls += 1
            if r.status_code != 200 or b'"result"' not in r.content:
                failures += 1
    out.put((calls, failures))


def measure(url: str, auth: tuple[str, str], method: str, clients: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=client, args=(url, auth, method, WARMUP, seconds, results))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    counts: list[tuple[int, int]] = [
        results.get(timeout=WARMUP + seconds + 60) for _ in procs
    ]
    for p in procs:
        p.join()
    failures = sum(f for _, f in counts)
    if failures:
        raise SystemExit(f"{method}: {failures} calls did not return a result")
    return float(sum(c for c, _ in counts)) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per target")
    ap.add_argument("--clients", type=int, default=2, help="client processes per target")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the targets")
    ap.add_argument("--serve-constant", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--tls-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_constant:
        serve_constant(args.serve_constant, args.tls_dir)
        return

    from tests.support.proc import SealboxProcess

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sealbox-bench-") as tmp:
        sealbox = SealboxProcess(Path(tmp) / "data").start()
        constant: subprocess.Popen[str] | None = None
        try:
            constant, port = start_constant(Path(tmp) / "constant-tls")
            auth = ("admin", sealbox.password)
            targets = {
                CONSTANT_ROW: (f"https://127.0.0.1:{port}/json-rpc/12.3", "GetClusterInfo"),
                "GetClusterInfo": (sealbox.url, "GetClusterInfo"),
                "ListDrives": (sealbox.url, "ListDrives"),
            }
            # Interleaved rounds: a load change on the machine part-way through then hits every
            # target alike instead of skewing one ratio.
            per_round = args.seconds / args.rounds
            totals = dict.fromkeys(targets, 0.0)
            for _ in range(args.rounds):
                for name, (url, method) in targets.items():
                    totals[name] += measure(url, auth, method, args.clients, per_round)
            rows = [(name, total / args.rounds) for name, total in totals.items()]
        finally:
            if constant is not None:
                constant.terminate()
                constant.wait(10)
            sealbox.stop()

    print(f"Element API over keep-alive HTTPS, {args.clients} client processes, "
          f"{args.seconds:g} s per target in {args.rounds} rounds, {os.cpu_count()} CPUs, "
          f"load average at start {load:.2f}")
    print(f"{'target':32} {'calls/s':>10} {'vs constant':>12}")
    base = rows[0][1]
    worst = 1.0
    for name, rate in rows:
        ratio = rate / base
        if name != CONSTANT_ROW:
            worst = min(worst, ratio)
        print(f"{name:32} {rate:10.0f} {ratio:11.2f}x")
    verdict = "meets" if worst >= GOAL else "MISSES"
    print(f"lowest ratio {worst:.2f} {verdict} the goal of {GOAL}")


if __name__ == "__main__":
    main()
