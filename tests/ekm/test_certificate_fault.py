"""kmipCertificateFault: raised while a key server certificate expires within 30 days, and
resolved by itself once ModifyKeyServerKmip installs a good one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from sealbox.kms import ca, server
from sealbox.kms.testing import RunningKms
from tests.support.proc import SealboxProcess, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("sbx") / "data",
                          extra=["--monitor-interval", "0.5"]).start()
    yield proc
    proc.stop()


def _sign(kms: RunningKms, csr: str, days: int) -> str:
    layout = server.KmsLayout(kms.directory)
    ca_cert, ca_key = ca.load_ca(layout.ca_cert, layout.ca_key)
    cert = ca.sign_csr(ca_cert, ca_key, csr, validity=dt.timedelta(days=days))
    return ca.cert_pem(cert).decode()


def test_expiring_client_certificate_raises_and_renewal_resolves(
        cluster: SealboxProcess, kms: RunningKms) -> None:
    sf = cluster.element()
    sf.create_public_private_key_pair(common_name="expiry-test")
    csr = sf.get_client_certificate_sign_request().client_certificate_sign_request
    short = _sign(kms, csr, days=10)
    server_id = sf.create_key_server_kmip(
        kmip_ca_certificate=kms.ca_pem.decode(), kmip_client_certificate=short,
        kmip_key_server_hostnames=["127.0.0.1"], kmip_key_server_name="expiring",
        kmip_key_server_port=kms.port).kmip_key_server.key_server_id

    faults = [f for f in sf.list_cluster_faults(fault_types="current").faults
              if f.code == "kmipCertificateFault"]
    assert len(faults) == 1
    fault = faults[0]
    assert fault.severity == "warning" and fault.resolved_date == ""
    assert f"Key server {server_id}" in fault.details and "client certificate" in fault.details
    assert "ModifyKeyServerKmip" in fault.details

    sf.modify_key_server_kmip(key_server_id=server_id,
                              kmip_client_certificate=_sign(kms, csr, days=365))
    resolved = wait_until(
        lambda: [f for f in sf.list_cluster_faults(fault_types="resolved").faults
                 if f.code == "kmipCertificateFault"], 10, "the fault to resolve")
    assert resolved[0].cluster_fault_id == fault.cluster_fault_id and resolved[0].resolved_date
    assert not [f for f in sf.list_cluster_faults(fault_types="current").faults
                if f.code == "kmipCertificateFault"]
