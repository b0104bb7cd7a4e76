"""``sealbox kms``: init, sign-csr and serve, driven as an operator would."""

from __future__ import annotations

import base64
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from sealbox.cli.kms import kms
from sealbox.kmip import KmipClient, KmipEndpoint, certs
from sealbox.kms.testing import RunningKms, free_port


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def kms_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "kms"
    result = CliRunner().invoke(kms, ["init", "--dir", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


def test_init_writes_a_private_complete_directory(kms_dir: Path) -> None:
    assert _mode(kms_dir) == 0o700
    for key in ("ca.key", "server.key"):
        assert _mode(kms_dir / key) == 0o600
    ca = x509.load_pem_x509_certificate((kms_dir / "ca.pem").read_bytes())
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    server = x509.load_pem_x509_certificate((kms_dir / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert server.issuer == ca.subject
    conf = (kms_dir / "server.conf").read_text()
    assert f"policy_path={kms_dir.resolve() / 'policies'}" in conf
    assert f"database_path={kms_dir.resolve() / 'pykmip.db'}" in conf
    assert "auth_suite=TLS1.2" in conf


def test_init_twice_keeps_the_ca(kms_dir: Path) -> None:
    before = (kms_dir / "ca.pem").read_bytes()
    result = CliRunner().invoke(kms, ["init", "--dir", str(kms_dir)])
    assert result.exit_code == 0 and "already initialized" in result.output
    assert (kms_dir / "ca.pem").read_bytes() == before


def _csr(cn: str = "cluster-1") -> tuple[bytes, certs.KeyPair]:
    pair = certs.generate_key_pair()
    return certs.build_csr(certs.Subject(cn), pair.private_key_pem), pair


def test_sign_csr_from_pem_file_to_out_file(kms_dir: Path, tmp_path: Path) -> None:
    csr, pair = _csr()
    (tmp_path / "c.csr").write_bytes(csr)
    out = tmp_path / "c.pem"
    result = CliRunner().invoke(
        kms,
        ["sign-csr", "--dir", str(kms_dir), "--csr", str(tmp_path / "c.csr"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    cert = certs.validate_client_certificate(out.read_bytes())
    assert certs.certificate_matches_key(cert, pair.public_key)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert 360 <= certs.days_until_expiry(cert) <= 366


def test_sign_csr_accepts_base64_der_on_stdin(kms_dir: Path) -> None:
    csr, _pair = _csr("cluster-b64")
    der = x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER)
    result = CliRunner().invoke(
        kms, ["sign-csr", "--dir", str(kms_dir), "--csr", "-"], input=base64.b64encode(der).decode()
    )
    assert result.exit_code == 0, result.output
    cert = certs.parse_certificate(result.output)
    assert certs.common_name(cert) == "cluster-b64"


@pytest.mark.parametrize(
    "text",
    ["garbage", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"],
)
def test_sign_csr_refuses_garbage(kms_dir: Path, text: str) -> None:
    result = CliRunner().invoke(kms, ["sign-csr", "--dir", str(kms_dir), "--csr", "-"], input=text)
    assert result.exit_code != 0
    assert "CSR" in result.output


def test_commands_on_an_uninitialized_dir_say_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(kms, ["sign-csr", "--dir", str(tmp_path), "--csr", "-"], input="x")
    assert result.exit_code != 0 and "kms init" in result.output


def _serve(directory: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sealbox.cli.kms",
            "serve",
            "--dir",
            str(directory),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_a_csr_signed_client_and_stops_promptly(
    kms_dir: Path, sig: signal.Signals
) -> None:
    csr, pair = _csr()
    cert = CliRunner().invoke(
        kms, ["sign-csr", "--dir", str(kms_dir), "--csr", "-"], input=csr.decode()
    )
    server = RunningKms(kms_dir, free_port())
    server.start()
    try:
        endpoint = KmipEndpoint(
            hostnames=("localhost",),
            ca_pem=(kms_dir / "ca.pem").read_bytes(),
            client_cert_pem=cert.output.encode(),
            client_key_pem=pair.private_key_pem,
            port=server.port,
        )
        with KmipClient(endpoint) as client:
            assert client.test_connection().vendor
            proc = server.process
            assert proc is not None
            start = time.monotonic()
            proc.send_signal(sig)
            assert proc.wait(5) == 0
            assert time.monotonic() - start < 5.0
    finally:
        server.stop()


def test_serve_on_a_busy_port_fails_with_a_message(kms_dir: Path) -> None:
    server = RunningKms(kms_dir, free_port())
    server.start()
    try:
        second = _serve(kms_dir, server.port)
        _out, err = second.communicate(timeout=20)
        assert second.returncode != 0
        assert f"could not listen on 127.0.0.1:{server.port}" in err.decode()
    finally:
        server.stop()
