"""The cluster's background monitor: runs its checks at start and then periodically.

A failing check is logged and retried at the next round; it never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger("sealbox.monitor")


class Monitor:
    def __init__(self, interval: float, checks: Sequence[Callable[[], None]]) -> None:
        self._interval = interval
        self._checks = list(checks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, check: Callable[[], None]) -> None:
        self._checks.append(check)

    def run_once(self) -> None:
        for check in self._checks:
            try:
                check()
            except Exception:
                log.exception("monitor check %s failed", getattr(check, "__qualname__", check))

    def start(self) -> None:
        self.run_once()
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        self._thread.start()

    def start_later(self) -> None:
        """Start without running the checks now (their first run is one interval away)."""
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
