"""An NBD server on a free loopback port, in-process, over in-memory exports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from sealbox.nbd.memory import DictCatalog, MemoryExport
from sealbox.nbd.server import NbdServer
from tests.nbd.nbd_raw import VOL_SIZE, close_all


@pytest.fixture
def vol() -> MemoryExport:
    """A 4 MiB export named "vol", filled with a known random pattern."""
    return MemoryExport("vol", VOL_SIZE, os.urandom(VOL_SIZE))


@pytest.fixture
def catalog(vol: MemoryExport) -> DictCatalog:
    other = MemoryExport("other", 1024 * 1024)
    locked = MemoryExport("locked", 8192)
    catalog = DictCatalog([vol, other, locked])
    catalog.set_unavailable("locked", "drives are locked: key server kms-1 unreachable")
    return catalog


@pytest.fixture
def server(catalog: DictCatalog) -> Iterator[NbdServer]:
    srv = NbdServer(catalog, port=0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def uri(server: NbdServer) -> Callable[[str], str]:
    return lambda name: f"nbd://127.0.0.1:{server.port}/{name}"


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    close_all()
