from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbox.kms.testing import RunningKms, launch_kms
from tests.support.proc import SealboxProcess


@pytest.fixture(scope="module")
def sealbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    """One running cluster (created at first start) shared by a test module."""
    proc = SealboxProcess(tmp_path_factory.mktemp("sealbox") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def own_kms(tmp_path: Path) -> Iterator[RunningKms]:
    """A key server of this test's own (real PyKMIP, mutual TLS), which the test may stop and
    start again; tests/ekm's ``kms`` is shared by a module and must keep running."""
    server = launch_kms(tmp_path / "kms")
    yield server
    server.stop()
