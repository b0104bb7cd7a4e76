"""The access gate's promise, which no NBD client can observe from outside: once an access
change returns, no request it forbids is still running (those under way are waited for)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pytest

from sealbox.cluster.storage import StorageService
from sealbox.cluster.volume_access import MODES, AccessGate
from sealbox.cluster.volumes import COLL, VolumeService
from sealbox.nbd.export import ExportAccessDenied
from sealbox.store.sqlite import SqliteStore
from tests.support.proc import wait_until

TIMEOUT = 10.0


def _hold(gate: AccessGate, writes: bool, entered: threading.Event,
          release: threading.Event) -> threading.Thread:
    """A request under way on ``gate`` until ``release`` is set."""
    def request() -> None:
        with gate.admit(writes=writes):
            entered.set()
            release.wait(TIMEOUT)

    thread = threading.Thread(target=request)
    thread.start()
    assert entered.wait(TIMEOUT)
    return thread


@pytest.mark.parametrize(("access", "writes"), [("readOnly", True), ("locked", False)])
def test_change_waits_for_the_requests_it_forbids(access: str, writes: bool) -> None:
    gate = AccessGate("readWrite")
    entered, release = threading.Event(), threading.Event()
    request = _hold(gate, writes, entered, release)
    changed = threading.Event()
    changer = threading.Thread(target=lambda: gate.change(access) and changed.set())
    changer.start()
    wait_until(lambda: gate.mode is MODES[access], TIMEOUT, "the new access to apply")
    # Until the running request ends the change has not returned, yet a new request that the
    # new access forbids is already refused.
    with pytest.raises(ExportAccessDenied), gate.admit(writes=writes):
        pass
    assert not changed.is_set()
    release.set()
    changer.join(TIMEOUT)
    request.join(TIMEOUT)
    assert changed.is_set()


def test_read_only_does_not_wait_for_reads() -> None:
    gate = AccessGate("readWrite")
    entered, release = threading.Event(), threading.Event()
    reader = _hold(gate, False, entered, release)
    try:
        assert gate.change("readOnly", timeout=TIMEOUT)  # returns with the read still running
        assert gate.read_only
    finally:
        release.set()
        reader.join(TIMEOUT)


def test_a_stuck_request_bounds_the_wait() -> None:
    gate = AccessGate("readWrite")
    entered, release = threading.Event(), threading.Event()
    writer = _hold(gate, True, entered, release)
    try:
        assert gate.change("locked", timeout=0.2) is False
        with pytest.raises(ExportAccessDenied, match="volume is locked"), \
                gate.admit(writes=False):
            pass
    finally:
        release.set()
        writer.join(TIMEOUT)


def test_one_volume_waiting_on_a_request_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """VolumeService serialises access changes, but waits for running requests outside that
    lock: a write stuck on volume 1 delays only volume 1's ModifyVolume."""
    store = SqliteStore(tmp_path / "config.db")
    service = VolumeService(store, cast(StorageService, None))  # update() uses the store only
    with store.write() as txn:
        for vid in (1, 2):
            txn.put(COLL, vid, {"volumeID": vid, "status": "active", "access": "readWrite"})
    gate = service.gates.gate(1, "readWrite")
    entered, release = threading.Event(), threading.Event()
    stuck = _hold(gate, True, entered, release)
    first = threading.Thread(target=lambda: service.update(1, access="readOnly"))
    first.start()
    wait_until(lambda: gate.mode is MODES["readOnly"], TIMEOUT, "volume 1's change to apply")
    other = threading.Thread(target=lambda: service.update(2, access="locked"))
    other.start()
    other.join(TIMEOUT)
    assert not other.is_alive()  # volume 2 changed while volume 1's change still waits
    assert first.is_alive()
    release.set()
    stuck.join(TIMEOUT)
    first.join(TIMEOUT)
    assert not first.is_alive()
    store.close()
