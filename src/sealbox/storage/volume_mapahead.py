"""Mapping ahead of streaming writers, in the background.

A chunk must be mapped (the ``MapChunk`` record durable on both slice drives) before it is
written, and a commit costs a flush of each slice drive, which waits for a disk the block
drives keep busy: tens of milliseconds, sometimes more. A writer that reaches an unmapped chunk
waits for that commit, and so does every other writer behind it. So while a writer streams,
the engine asks this helper to map the chunks it will reach next, before it gets there; the
writer itself only ever waits when it outruns the helper.

One helper thread at most per engine, started on demand and ended when there is nothing left
to do (no idle thread is left behind by engines that are never closed). Requests for the same
place coalesce. A failed request (no space, metadata unavailable, volume deleted) is dropped:
the writer then allocates itself when it gets there and sees the error where it can report it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Request = tuple[int, int]  # (volume id, chunk the writer is at)


class MapAhead:
    def __init__(self, work: Callable[[int, int], None]) -> None:
        self._work = work
        self._cv = threading.Condition()
        self._queue: deque[Request] = deque()
        self._pending: set[Request] = set()
        self._running = False
        self._closed = False

    def request(self, volume_id: int, chunk: int) -> None:
        """Ask for ``work(volume_id, chunk)`` to run soon in the helper thread; returns at once."""
        key = (volume_id, chunk)
        with self._cv:
            if self._closed or key in self._pending:
                return
            self._pending.add(key)
            self._queue.append(key)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="map-ahead", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._cv:
                if not self._queue or self._closed:
                    self._queue.clear()
                    self._pending.clear()
                    self._running = False
                    self._cv.notify_all()
                    return
                key = self._queue.popleft()
            try:
                self._work(*key)
            except Exception:  # the writer allocates by itself later and reports any error
                log.debug("mapping ahead of volume %d chunk %d failed", *key, exc_info=True)
            finally:
                with self._cv:
                    self._pending.discard(key)

    def wait_idle(self) -> None:
        """Return once every request made so far has been handled."""
        with self._cv:
            self._cv.wait_for(lambda: not self._running)

    def close(self) -> None:
        """Drop queued requests and wait for the one in progress (if any) to finish."""
        with self._cv:
            self._closed = True
            self._cv.wait_for(lambda: not self._running)
