from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbox.kms.testing import RunningKms, launch_kms


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKms]:
    """A real PyKMIP key server process with its own CA, on a free loopback port."""
    server = launch_kms(tmp_path_factory.mktemp("kms"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other_kms_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second key server directory: another CA, for wrong-CA cases."""
    from sealbox.kms import server

    path = tmp_path_factory.mktemp("other-kms")
    server.init(path)
    return path
