"""The bundled local key server: PyKMIP's demonstration server with a generated CA.

It exists so that external key management can be tried, demonstrated and tested on one
machine. PyKMIP calls its server a testing/demonstration server; production clusters point at
the customer's own KMIP servers. Nothing in the cluster imports this package.

A server directory holds (keys 0600, directory 0700)::

    ca.pem ca.key           the local CA, which also signs client CSRs
    server.pem server.key   the server certificate (SANs: the given host names)
    server.conf             PyKMIP server configuration, every path explicit
    policies/               operation policy directory (explicit: None would scan the cwd)
    pykmip.db server.log    the object store and the server's own log
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from sealbox.errors import SealboxError
from sealbox.kmip.certs import parse_certificate
from sealbox.kms import ca

log = logging.getLogger(__name__)

SERVER_VALIDITY = ca.SERVER_VALIDITY
DEFAULT_PORT = 5696
DEFAULT_NAMES = ("127.0.0.1", "localhost")
# How often the accept loop wakes to notice a stop request (PyKMIP's own is 10 s).
_ACCEPT_POLL_S = 0.2


class KmsError(SealboxError):
    element_name = "xKmsError"


@dataclass(frozen=True)
class KmsLayout:
    """Paths inside one server directory."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def config(self) -> Path:
        return self.root / "server.conf"

    @property
    def policies(self) -> Path:
        return self.root / "policies"

    @property
    def database(self) -> Path:
        return self.root / "pykmip.db"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def is_initialized(self) -> bool:
        return all(
            p.exists()
            for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key, self.config)
        )

    def require_initialized(self) -> None:
        if not self.is_initialized():
            raise KmsError(f"{self.root} is not a key server directory; run 'sealbox kms init'.")


def _config_text(layout: KmsLayout) -> str:
    # Every path is absolute and inside the directory: PyKMIP's defaults (/etc/pykmip,
    # /tmp/pykmip.database, policy scan of the cwd) would leak state between servers.
    return "\n".join(
        [
            "[server]",
            "hostname=127.0.0.1",
            f"port={DEFAULT_PORT}",
            f"certificate_path={layout.server_cert}",
            f"key_path={layout.server_key}",
            f"ca_path={layout.ca_cert}",
            "auth_suite=TLS1.2",
            f"policy_path={layout.policies}",
            "enable_tls_client_auth=True",
            "logging_level=INFO",
            f"database_path={layout.database}",
            "",
        ]
    )


def init(directory: Path | str, names: Sequence[str] = DEFAULT_NAMES) -> KmsLayout:
    """Create a key server directory; an already initialized one is left as it is."""
    layout = KmsLayout(Path(directory).resolve())
    if layout.is_initialized():
        return layout
    if not layout.root.exists():
        layout.root.mkdir(mode=0o700, parents=True)
        layout.root.chmod(0o700)  # mkdir's mode is filtered by the umask
    layout.policies.mkdir(mode=0o700, exist_ok=True)
    ca_cert, ca_key = ca.make_ca()
    server_cert, server_key = ca.issue_server(ca_cert, ca_key, list(names), SERVER_VALIDITY)
    ca.write_private(layout.ca_key, ca_key.reveal())
    ca.write_private(layout.server_key, server_key.reveal())
    layout.server_cert.write_bytes(ca.cert_pem(server_cert))
    layout.config.write_text(_config_text(layout))
    # The CA certificate last: its presence marks a complete directory.
    layout.ca_cert.write_bytes(ca.cert_pem(ca_cert))
    return layout


def sign_csr(directory: Path | str, csr_text: str | bytes) -> bytes:
    """PEM client certificate (clientAuth, one year) for a PEM or base64-DER CSR."""
    layout = KmsLayout(Path(directory).resolve())
    layout.require_initialized()
    ca_cert, ca_key = ca.load_ca(layout.ca_cert, layout.ca_key)
    return ca.cert_pem(ca.sign_csr(ca_cert, ca_key, csr_text))


def issue_client_cert(
    directory: Path | str,
    common_name: str,
    *,
    validity: dt.timedelta = ca.CLIENT_VALIDITY,
    not_before: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new client, for tests and demos.

    The key is returned as plain bytes on purpose: this helper only serves tests and demos,
    whose callers write it to a file or wrap it in a Secret themselves.
    """
    layout = KmsLayout(Path(directory).resolve())
    layout.require_initialized()
    ca_cert, ca_key = ca.load_ca(layout.ca_cert, layout.ca_key)
    cert, key = ca.issue_client(
        ca_cert, ca_key, common_name, validity=validity, not_before=not_before
    )
    return ca.cert_pem(cert), key.reveal()


def reissue_server_cert(
    directory: Path | str,
    names: Sequence[str] = DEFAULT_NAMES,
    *,
    validity: dt.timedelta = ca.SERVER_VALIDITY,
    not_before: dt.datetime | None = None,
) -> None:
    """Replace the server certificate (takes effect at the next start); lets tests make an
    expired or soon-expiring one, or change the names it is valid for."""
    layout = KmsLayout(Path(directory).resolve())
    layout.require_initialized()
    ca_cert, ca_key = ca.load_ca(layout.ca_cert, layout.ca_key)
    cert, key = ca.issue_server(ca_cert, ca_key, list(names), validity, not_before)
    ca.write_private(layout.server_key, key.reveal())
    layout.server_cert.write_bytes(ca.cert_pem(cert))


def ca_certificate(directory: Path | str) -> x509.Certificate:
    layout = KmsLayout(Path(directory).resolve())
    layout.require_initialized()
    return parse_certificate(layout.ca_cert.read_bytes())


def _quiet_pykmip_warnings() -> None:
    # PyKMIP 0.11 uses APIs deprecated by SQLAlchemy 2 and by cryptography (TripleDES, OFB…
    # moved to "decrepit"); the warnings concern PyKMIP's code, not ours, and would drown the
    # server's output. Only warnings raised from PyKMIP's own modules are ignored.
    warnings.filterwarnings("ignore", module=r"kmip(\.|$)")
    warnings.filterwarnings("ignore", message=r".*declarative_base")


def serve(
    directory: Path | str,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Run the key server in this process until SIGTERM or SIGINT; return promptly after.

    ``on_listening`` is called once the socket is bound. Must run in the main thread
    (PyKMIP installs signal handlers).
    """
    layout = KmsLayout(Path(directory).resolve())
    layout.require_initialized()
    if not 0 < port < 65536:
        raise KmsError(f"Port {port} is out of range (PyKMIP cannot bind port 0).")
    server = _make_server(layout, host, port)
    try:
        server.start()
    except Exception as exc:
        _shutdown(server)
        raise KmsError(f"The key server could not listen on {host}:{port}.") from exc
    # PyKMIP's accept() times out every 10 s before it looks at its stop flag; poll faster
    # so that SIGTERM stops the server in well under a second.
    server._socket.settimeout(_ACCEPT_POLL_S)
    if on_listening is not None:
        on_listening()
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        _shutdown(server)


def _make_server(layout: KmsLayout, host: str, port: int) -> Any:
    _quiet_pykmip_warnings()
    from kmip.services.server.server import KmipServer  # heavy; only the server needs it

    return KmipServer(
        hostname=host,
        port=port,
        config_path=str(layout.config),
        log_path=str(layout.log),
        policy_path=str(layout.policies),
        database_path=str(layout.database),
        auth_suite="TLS1.2",
        enable_tls_client_auth=True,
        live_policies=False,
    )


def _shutdown(server: object) -> None:
    """Release the socket and PyKMIP's helper processes without its 10 s-per-thread joins.

    Session threads are daemons: they end with the process, and every object PyKMIP stores
    is committed to SQLite as each operation completes.
    """
    sock = getattr(server, "_socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    monitor = getattr(server, "policy_monitor", None)
    if monitor is not None:
        with contextlib.suppress(Exception):
            monitor.stop()
            monitor.join(2.0)
            if monitor.is_alive():
                monitor.terminate()
    manager = getattr(server, "manager", None)
    if manager is not None:
        with contextlib.suppress(Exception):
            manager.shutdown()


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
