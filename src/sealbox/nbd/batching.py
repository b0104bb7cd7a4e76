"""The queue between a connection's reader and the workers, which merges adjacent requests.

A streaming client (``nbdcopy``, ``qemu-img convert``) keeps dozens of requests in flight, each
a slice of a sequential run: 256 KiB reads or writes, one after the other. While the workers
are busy those requests wait in this queue, and a read (or write) that continues the range of
the request waiting last, with the same flags, joins it: the workers then make one export call
for the whole run. Every layer below pays per call (the Python of the engine, a chunk's
checksum sectors, cipher calls, system calls), so a 1 MiB run costs much less than four
256 KiB ones. Nothing waits to be merged: a request is merged only into one that is still
queued, so an idle server runs every request at once, as before.

A merged run never crosses a multiple of ``merge_bytes`` (the engine's chunk), so that it
maps onto whole chunks of the volume rather than straddling two. Each request is still
answered on its own, by its cookie; :class:`~sealbox.nbd.session.Session` runs a failed batch
again one request at a time, so an error reaches only the requests it concerns.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from sealbox.nbd import protocol as p

_MERGEABLE = (p.CMD_READ, p.CMD_WRITE)


@dataclass(slots=True)
class Request:
    """One request as the reader parsed it (with its payload, for a write)."""

    cmd: int
    flags: int
    cookie: int
    offset: int
    length: int
    data: bytes = b""


@dataclass(slots=True)
class Batch:
    """Requests run as one export call: one request of any kind, or reads (or writes) with
    the same flags whose ranges follow each other, in that order."""

    first: Request
    cost: int
    more: list[Request] = field(default_factory=list)
    length: int = 0

    def __post_init__(self) -> None:
        self.length = self.first.length

    @property
    def requests(self) -> list[Request]:
        return [self.first, *self.more]

    @property
    def offset(self) -> int:
        return self.first.offset


class PendingQueue:
    """A FIFO of :class:`Batch` that merges each request into the batch queued last when it
    continues that batch's range (see the module docstring)."""

    def __init__(self, merge_bytes: int) -> None:
        self._merge_bytes = merge_bytes
        self._items: deque[Batch] = deque()
        self._lock = threading.Lock()
        self._requests = 0  # in the queued batches

    def __len__(self) -> int:
        """How many requests wait (a merged batch counts each of its requests)."""
        return self._requests

    def put(self, request: Request, cost: int) -> None:
        with self._lock:
            self._requests += 1
            tail = self._items[-1] if self._items else None
            if tail is not None and self._joins(tail, request):
                tail.more.append(request)
                tail.length += request.length
                tail.cost += cost
                return
            self._items.append(Batch(request, cost))

    def take(self) -> Batch | None:
        """The batch at the head, now closed to merging; None if nothing waits."""
        with self._lock:
            if not self._items:
                return None
            batch = self._items.popleft()
            self._requests -= 1 + len(batch.more)
            return batch

    def _joins(self, tail: Batch, request: Request) -> bool:
        first = tail.first
        if (request.cmd != first.cmd or request.cmd not in _MERGEABLE
                or request.flags != first.flags or request.length == 0):
            return False
        end = tail.offset + tail.length
        if request.offset != end:
            return False
        window = self._merge_bytes
        return tail.offset // window == (end + request.length - 1) // window
