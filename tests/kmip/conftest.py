"""Shared fixtures: a real PyKMIP server process on loopback, started once per module.

The helper itself lives in ``sealbox.kms.testing`` so that other test packages (the cluster's)
can start key servers too: ``launch_kms(dir)`` / ``start_kms(dir)``.

Warnings: none need filtering here. PyKMIP's own deprecation warnings (SQLAlchemy 2,
cryptography "decrepit" ciphers) are suppressed where PyKMIP is imported
(``sealbox.kmip._pykmip``) and in the server child process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

import pytest

from sealbox.kmip import KmipClient, KmipEndpoint
from sealbox.kms.testing import RunningKms, launch_kms


class Timeouts(TypedDict):
    connect_timeout: float
    operation_timeout: float


# Short timeouts keep the failure tests fast; a loopback server answers in milliseconds.
FAST = Timeouts(connect_timeout=1.0, operation_timeout=3.0)


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKms]:
    server = launch_kms(tmp_path_factory.mktemp("kms"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def endpoint(kms: RunningKms) -> KmipEndpoint:
    return kms.endpoint("sealbox-test", **FAST)


@pytest.fixture
def client(endpoint: KmipEndpoint) -> Iterator[KmipClient]:
    with KmipClient(endpoint) as c:
        yield c
