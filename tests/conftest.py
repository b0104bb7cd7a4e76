from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
