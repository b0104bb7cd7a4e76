"""The worker threads that run queued NBD requests, shared by every connection of a server.

Why one pool and not a few workers per connection: the work is CPU-bound (ciphers, sector
tokens, copies) on a machine with few cores, and every thread beyond what the cores can run
only adds contention: for the GIL, for the reply socket's send lock, for the drive files. With
``nbdcopy``'s four connections, four workers per connection (16 threads) read a volume at
540-575 MB/s here; one per connection (4 threads) at 670-800 MB/s, with less CPU per GiB. A
single connection, though, needs several workers to keep the cores busy (one worker: 500 MB/s,
four: 630 MB/s). A shared pool gives both: however many connections there are, about two
export calls per core run at once, and one busy connection can have all of them.

While every worker is busy, requests wait in their connection's queue, where adjacent ones
merge (:mod:`sealbox.nbd.batching`); a worker takes the batch at the head of a queue only when
it is free to run it.

Fairness: connections with queued work take turns in arrival order; one that still has work
after a worker took a batch goes to the back of the line.

Stalls: a worker only runs export calls; each connection sends its replies on its own thread,
and a request holds its share of the connection's byte budget until its reply is sent. So a
client that stops reading its replies stops its own reader once its budget is spent and holds
no worker. An export call that never returns does hold its worker, and enough of them would
hold the whole pool; with sealbox volumes that means a hung drive, and since every volume's
chunks are spread over all block drives, a hung drive would stall every volume whoever ran the
calls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Protocol

log = logging.getLogger(__name__)


def default_size() -> int:
    """Two workers per core this process may run on, at least four."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 2
    return max(4, 2 * cores)


class WorkSource(Protocol):
    def run_one(self) -> None:
        """Take the batch at the head of the queue, if any, run it and answer it. Must not
        raise."""


class WorkerPool:
    """``size`` threads running the work of the sources that :meth:`wake` them."""

    def __init__(self, size: int, name: str = "nbd-worker") -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self._size = size
        self._name = name
        self._cond = threading.Condition()
        self._ready: deque[WorkSource] = deque()  # each source at most once
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        with self._cond:
            if self._threads:
                raise RuntimeError("worker pool already started")
            self._threads = [threading.Thread(target=self._run, name=f"{self._name}-{i}",
                                              daemon=True) for i in range(self._size)]
        for thread in self._threads:
            thread.start()

    def wake(self, source: WorkSource) -> None:
        """``source`` has queued work: a worker will call its ``run_one``."""
        with self._cond:
            if source not in self._ready:  # short: the sources with work waiting
                self._ready.append(source)
                self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Let the workers finish the work already handed to them, then end them; waits up to
        ``timeout`` seconds (a call that never returns leaves its daemon thread behind)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return
                source = self._ready.popleft()
            try:
                source.run_one()
            except Exception:  # run_one answers its own errors; this is a bug, not a request
                log.exception("nbd: a worker's batch failed unexpectedly")
