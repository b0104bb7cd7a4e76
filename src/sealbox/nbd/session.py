"""The transmission phase of one connection: read requests, queue them for the workers, reply.

Threading model (why not asyncio): export methods block on disk I/O and crypto, so they need
threads anyway, and PERF-NOTES measured plain threads with blocking ``recv`` at 1.7-3.6 GB/s
against 0.6-1.1 GB/s for asyncio streams. So each connection has one *reader* thread that
parses requests and receives write payloads with ``recv(n, MSG_WAITALL)`` (the GIL is released
while the kernel fills the buffer), the server's *workers* (:mod:`sealbox.nbd.workers`, shared
by all connections) call the export, and one *sender* thread per connection sends the replies.
Replies may leave out of order; the client matches them by cookie, as NBD allows.

Safety: a write reaches the export only after its whole payload has arrived, so a client that
vanishes mid-payload leaves the export unchanged. Requests are validated (flags, length,
range) before any payload is read; a rejected write's payload is read and dropped so the
stream stays in step. A byte budget bounds the memory a pipelining client can pin: a request
holds its share from before its payload is read until its reply is sent.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from sealbox.nbd import protocol as p
from sealbox.nbd.batching import Batch, PendingQueue, Request
from sealbox.nbd.export import ExportAccessDenied, ExportUnavailable
from sealbox.nbd.handshake import Negotiated
from sealbox.nbd.wire import ConnectionClosed, Wire
from sealbox.nbd.workers import WorkerPool

log = logging.getLogger(__name__)

_MIN_COST = 4096  # every request holds at least this much budget, bounding the queue length
Reply = list[bytes | memoryview]  # the parts of one or more replies, sent back to back
DEFAULT_MERGE_BYTES = 1 << 20  # adjacent queued requests run as one call up to this (batching.py)


class RequestError(Exception):
    """A request is answered with an NBD error instead of being run."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message


class _Budget:
    """Bytes of requests in flight on one connection; the reader waits when it is spent."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self, n: int) -> int:
        cost = min(max(n, _MIN_COST), self._limit)  # one oversize request may run alone
        with self._cond:
            while self._used and self._used + cost > self._limit and not self._closed:
                self._cond.wait()
            if self._closed:
                raise ConnectionClosed("session stopped")
            self._used += cost
        return cost

    def release(self, cost: int) -> None:
        with self._cond:
            self._used -= cost
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Session:
    """Serves requests on an already negotiated connection until the client disconnects."""

    def __init__(
        self, wire: Wire, negotiated: Negotiated, *, pool: WorkerPool, budget_bytes: int,
        merge_bytes: int = DEFAULT_MERGE_BYTES,
    ) -> None:
        """``pool``: the server's workers, which run this session's requests."""
        self._wire = wire
        self._neg = negotiated
        self._export = negotiated.export
        self._size = negotiated.size
        self._pool = pool
        self._budget = _Budget(budget_bytes)
        self._queue = PendingQueue(merge_bytes)
        self._idle = threading.Condition()
        self._unanswered = 0  # batches taken by workers whose replies are not yet sent
        # Replies go out on this connection's own sender thread, so that a client slow to read
        # them (or never reading them) holds no worker of the shared pool.
        self._replies: queue.SimpleQueue[tuple[Reply, int] | None] = queue.SimpleQueue()
        self._handlers: dict[int, Callable[[Request], Reply]] = {
            p.CMD_READ: self._read,
            p.CMD_WRITE: self._write,
            p.CMD_FLUSH: self._flush,
            p.CMD_TRIM: self._trim,
            p.CMD_WRITE_ZEROES: self._write_zeroes,
        }

    def serve(self) -> None:
        """Run until NBD_CMD_DISC, end of stream, a protocol violation or :meth:`stop`; every
        request already received is completed (and answered if possible) before returning."""
        sender = threading.Thread(target=self._send_replies, name=f"nbd-send-{self._neg.name}",
                                  daemon=True)
        sender.start()
        try:
            self._read_requests()
        except ConnectionClosed as exc:
            log.debug("nbd %s: connection ends: %s", self._neg.name, exc)
        finally:
            with self._idle:
                self._idle.wait_for(lambda: not len(self._queue) and not self._unanswered)
            self._replies.put(None)
            sender.join()

    def queued_requests(self) -> int:
        return len(self._queue)

    def stop(self) -> None:
        """Wake the reader wherever it waits; :meth:`serve` then winds down."""
        self._budget.close()
        self._wire.shutdown()

    # --- reader -------------------------------------------------------------------------------
    def _read_requests(self) -> None:
        while True:
            header = self._wire.recv_exact(p.REQUEST.size)
            magic, flags, cmd, cookie, offset, length = p.REQUEST.unpack(header)
            if magic != p.REQUEST_MAGIC:
                raise ConnectionClosed(f"bad request magic {magic:#x}")
            if cmd == p.CMD_DISC:
                return
            req = Request(cmd, flags, cookie, offset, length)
            try:
                self._check(req)
            except RequestError as err:
                if cmd == p.CMD_WRITE:
                    self._wire.discard(length)
                self._wire.send(self._error_reply(req, err.errno, err.message))
                continue
            cost = self._budget.acquire(length if cmd in (p.CMD_READ, p.CMD_WRITE) else 0)
            if cmd == p.CMD_WRITE:
                try:
                    req.data = self._wire.recv_exact(length)
                except ConnectionClosed:
                    self._budget.release(cost)
                    raise
            self._queue.put(req, cost)
            self._pool.wake(self)

    def _check(self, req: Request) -> None:
        allowed = p.ALLOWED_CMD_FLAGS.get(req.cmd)
        if allowed is None:
            raise RequestError(p.EINVAL, f"unknown command {req.cmd}")
        if req.flags & ~allowed:
            raise RequestError(p.EINVAL, f"flags {req.flags:#x} not valid for command {req.cmd}")
        if req.cmd in (p.CMD_READ, p.CMD_WRITE) and req.length > p.MAX_PAYLOAD:
            raise RequestError(p.EINVAL, f"length {req.length} above maximum {p.MAX_PAYLOAD}")
        if req.offset + req.length > self._size and req.cmd != p.CMD_FLUSH:
            # The protocol asks ENOSPC for writes past the end and EINVAL for the rest.
            errno = p.ENOSPC if req.cmd in (p.CMD_WRITE, p.CMD_WRITE_ZEROES) else p.EINVAL
            raise RequestError(errno, "request beyond the end of the export")

    # --- workers ------------------------------------------------------------------------------
    def run_one(self) -> None:
        """For a worker: run the batch at the head of the queue and hand its reply to the
        sender."""
        with self._idle:  # one step, so that serve() never sees the batch in neither count
            batch = self._queue.take()
            if batch is None:
                return
            self._unanswered += 1
        if len(self._queue):  # more waiting: another worker may start on it meanwhile
            self._pool.wake(self)
        reply: Reply = []
        try:
            reply = self._run_batch(batch) if batch.more else self._run(batch.first)
        finally:
            self._replies.put((reply, batch.cost))

    def _send_replies(self) -> None:
        """The sender thread: each reply in turn; then the batch's budget is free again (so a
        client that does not read its replies soon stops its own reader, not the workers)."""
        while (item := self._replies.get()) is not None:
            reply, cost = item
            try:
                # A client that is gone gets no reply; the rest of the queue still runs, so
                # that the reader can finish.
                with contextlib.suppress(ConnectionClosed):
                    self._wire.send(reply)
            finally:
                self._budget.release(cost)
                with self._idle:
                    self._unanswered -= 1
                    self._idle.notify_all()

    def _run_batch(self, batch: Batch) -> Reply:
        """Adjacent reads or writes as one export call, each request answered on its own (in
        one send). If the call fails, each request runs again alone, so that an error (a bad
        sector, a range the client may not touch) is reported for the requests it concerns
        only; rewriting what a failed write already wrote is harmless."""
        requests = batch.requests
        try:
            if batch.first.cmd == p.CMD_WRITE:
                data = b"".join(r.data for r in requests)
                self._export.write(batch.offset, data,
                                   fua=bool(batch.first.flags & p.CMD_FLAG_FUA))
                return [p.simple_reply(0, r.cookie) for r in requests]
            data = self._read_exact(batch.offset, batch.length)
        except Exception:  # each request again, alone, for its own answer
            return [part for r in requests for part in self._run(r)]
        view, replies = memoryview(data), []
        for r in requests:
            start = r.offset - batch.offset
            replies.extend(self._read_reply(r, view[start:start + r.length]))
        return replies

    def _run(self, req: Request) -> Reply:
        try:
            return self._handlers[req.cmd](req)
        except ExportAccessDenied as exc:
            # Debug only: a client retrying against a locked volume must not flood the log.
            log.debug("nbd %s: command %d refused: %s", self._neg.name, req.cmd, exc.reason)
            return self._error_reply(req, p.EPERM, exc.reason)
        except ExportUnavailable as exc:
            log.warning("nbd %s: command %d unavailable: %s", self._neg.name, req.cmd, exc.reason)
            return self._error_reply(req, p.EIO, exc.reason)
        except Exception:
            # Never the payload: only what was asked, where.
            log.exception(
                "nbd %s: command %d at offset %d length %d failed",
                self._neg.name,
                req.cmd,
                req.offset,
                req.length,
            )
            return self._error_reply(req, p.EIO, "I/O error")

    def _error_reply(self, req: Request, errno: int, message: str) -> Reply:
        # Reads must be answered with chunks once structured replies are on; the other commands
        # may keep simple replies (as qemu-nbd does), which every client accepts.
        if self._neg.structured and req.cmd == p.CMD_READ:
            return [p.error_chunk(req.cookie, errno, message)]
        return [p.simple_reply(errno, req.cookie)]

    def _read(self, req: Request) -> Reply:
        return self._read_reply(req, self._read_exact(req.offset, req.length))

    def _read_exact(self, offset: int, length: int) -> bytes:
        data = self._export.read(offset, length) if length else b""
        if len(data) != length:
            raise RuntimeError(f"export returned {len(data)} bytes for a read of {length}")
        return data

    def _read_reply(self, req: Request, data: bytes | memoryview) -> Reply:
        if not self._neg.structured:
            return [p.simple_reply(0, req.cookie), data]
        if not data:
            return [p.none_chunk(req.cookie)]
        return [p.data_chunk_header(req.cookie, req.offset, req.length), data]

    def _write(self, req: Request) -> Reply:
        if req.length:
            self._export.write(req.offset, req.data, fua=bool(req.flags & p.CMD_FLAG_FUA))
        return [p.simple_reply(0, req.cookie)]

    def _flush(self, req: Request) -> Reply:
        self._export.flush()
        return [p.simple_reply(0, req.cookie)]

    def _trim(self, req: Request) -> Reply:
        if req.length:
            self._export.trim(req.offset, req.length)
        if req.flags & p.CMD_FLAG_FUA:
            self._export.flush()
        return [p.simple_reply(0, req.cookie)]

    def _write_zeroes(self, req: Request) -> Reply:
        if req.length:
            fua = bool(req.flags & p.CMD_FLAG_FUA)
            self._export.write_zeroes(req.offset, req.length, fua=fua)
        return [p.simple_reply(0, req.cookie)]
