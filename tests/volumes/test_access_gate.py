"""The access gate's promise, which no NBD client can observe from outside: once an access
change returns, no request it forbids is still running (those under way are waited for)."""

from __future__ import annotations

import threading

import pytest

from sealbox.cluster.volume_access import MODES, AccessGate
from sealbox.nbd.export import ExportAccessDenied
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
