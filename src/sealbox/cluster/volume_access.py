"""Element volume access (``readWrite``, ``readOnly``, ``locked``, …), enforced on NBD.

The configuration store keeps each volume's access (so it survives a restart); NBD cannot read
the store on every request (a SQLite transaction per 4 KiB request would cost more than the
request), so each volume has an in-memory :class:`AccessGate` that every request of every
connection to it passes, built from the stored value the first time the volume is opened.
:class:`~sealbox.cluster.volumes.VolumeService` changes the gate right after it commits a new
access, and the change waits for the requests already running that the new access forbids:
once ModifyVolume answers, no write (``readOnly``) or no read or write (``locked``) is under way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sealbox.nbd.export import ExportAccessDenied

# A request stuck on a drive must not hang ModifyVolume for ever: past this the change is in
# force for every new request and the API answers (the stuck request logs its own failure).
DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class AccessMode:
    """What hosts may do under one Element access value; ``why`` is what a refused NBD client
    is told (every mode without reads says "volume is locked", which is what it is to a host)."""

    reads: bool
    writes: bool
    why: str


# Every value of the contract's VolumeAccess enumeration. Element locks an unpaired replication
# target ("If the volume is not paired, the access status is locked"); sealbox pairs no volumes
# and has no SnapMirror, so both target values are locked to hosts, and kept as given so that
# ListVolumes shows what the administrator set.
MODES: dict[str, AccessMode] = {
    "readWrite": AccessMode(True, True, ""),
    "readOnly": AccessMode(True, False, "volume is read-only (access 'readOnly')"),
    "locked": AccessMode(False, False, "volume is locked (access 'locked')"),
    "replicationTarget": AccessMode(
        False, False, "volume is locked (access 'replicationTarget': a replication target "
        "takes no host I/O, and sealbox pairs no volumes)"),
    "snapMirrorTarget": AccessMode(
        False, False, "volume is locked (access 'snapMirrorTarget': a SnapMirror target "
        "takes no host I/O, and sealbox has no SnapMirror)"),
}
ACCESS_VALUES = tuple(MODES)
DEFAULT_ACCESS = "readWrite"


class AccessGate:
    """One volume's access, and the reads and writes running under it."""

    def __init__(self, access: str) -> None:
        self._mode = MODES[access]
        self._cond = threading.Condition()
        self._running = {False: 0, True: 0}  # requests under way: reads (False), writes (True)
        self._draining = 0  # changes waiting for requests to end (they want a notify)

    @property
    def mode(self) -> AccessMode:
        return self._mode

    @property
    def read_only(self) -> bool:
        return not self._mode.writes

    @contextmanager
    def admit(self, writes: bool) -> Iterator[None]:
        """Run one request (a write if ``writes``: WRITE, TRIM, WRITE_ZEROES) or raise
        :class:`ExportAccessDenied` if the access forbids it."""
        with self._cond:
            if not (self._mode.writes if writes else self._mode.reads):
                raise ExportAccessDenied(self._mode.why)
            self._running[writes] += 1
        try:
            yield
        finally:
            with self._cond:
                self._running[writes] -= 1
                if self._draining:
                    self._cond.notify_all()

    def change(self, access: str, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Apply ``access`` to every request from now on, then wait for the running requests it
        forbids; False if some were still running after ``timeout`` seconds."""
        self.apply(access)
        return self.drain(timeout)

    def apply(self, access: str) -> None:
        """``access`` for every request from now on (requests already admitted run on)."""
        with self._cond:
            self._mode = MODES[access]

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Wait until no running request is one the current access forbids; False if some
        still were after ``timeout`` seconds."""
        with self._cond:
            self._draining += 1
            try:
                return self._cond.wait_for(
                    lambda: (self._mode.writes or not self._running[True])
                    and (self._mode.reads or not self._running[False]),
                    timeout,
                )
            finally:
                self._draining -= 1


class AccessGates:
    """The gates of one cluster's volumes, by volume ID."""

    def __init__(self) -> None:
        self._gates: dict[int, AccessGate] = {}
        self._lock = threading.Lock()

    def gate(self, volume_id: int, stored: str) -> AccessGate:
        """The volume's gate; made from ``stored`` (its access in the store) if it has none."""
        with self._lock:
            gate = self._gates.get(volume_id)
            if gate is None:
                gate = self._gates[volume_id] = AccessGate(stored)
            return gate

    def change(self, volume_id: int, access: str) -> bool:
        """See :meth:`AccessGate.change`."""
        return self.gate(volume_id, access).change(access)

    def apply(self, volume_id: int, access: str) -> AccessGate:
        """See :meth:`AccessGate.apply`; the gate, to :meth:`AccessGate.drain` on."""
        gate = self.gate(volume_id, access)
        gate.apply(access)
        return gate

    def forget(self, volume_id: int) -> None:
        with self._lock:
            self._gates.pop(volume_id, None)
