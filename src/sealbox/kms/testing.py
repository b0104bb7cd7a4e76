"""Run the bundled key server as a child process, for tests and benchmarks.

    with start_kms(tmp_path / "kms") as kms:
        endpoint = kms.endpoint("cluster-1")      # a client certificate signed by its CA
        KmipClient(endpoint).test_connection()

The server runs ``python -m sealbox.cli.kms serve`` in its own process on a free loopback
port; readiness is polled with a deadline, never a fixed sleep. Not used by the cluster.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sealbox.kmip.config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_OPERATION_TIMEOUT,
    KmipEndpoint,
)
from sealbox.kms import server
from sealbox.secrets import Secret

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class KmsStartError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on which connections are refused (bound but never listening, then released)."""
    return free_port(host)


@dataclass
class RunningKms:
    """A key server child process; ``stop``/``start`` keep its directory and port."""

    directory: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def ca_pem(self) -> bytes:
        return server.KmsLayout(self.directory).ca_cert.read_bytes()

    def client_credentials(self, common_name: str = "sealbox-test") -> tuple[bytes, Secret]:
        cert, key = server.issue_client_cert(self.directory, common_name)
        return cert, Secret(key)

    def endpoint(
        self,
        common_name: str = "sealbox-test",
        hostnames: tuple[str, ...] | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> KmipEndpoint:
        """An endpoint for this server with a fresh client certificate for ``common_name``."""
        cert, key = self.client_credentials(common_name)
        return KmipEndpoint(
            hostnames=hostnames or (self.host,),
            ca_pem=self.ca_pem,
            client_cert_pem=cert,
            client_key_pem=key,
            port=self.port,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
        )

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.directory / "serve.out", "ab")  # noqa: SIM115 - owned by the child
        with log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sealbox.cli.kms",
                    "serve",
                    "--dir",
                    str(self.directory),
                    "--port",
                    str(self.port),
                    "--host",
                    self.host,
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise KmsStartError(
                    f"key server exited with {self.process.returncode}: {self._tail()}"
                )
            if server.port_accepts(self.host, self.port, timeout=0.2):
                return
            time.sleep(0.02)  # polling interval, not a wait for an event
        self.stop()
        raise KmsStartError(f"key server not listening on {self.port} after {timeout} s")

    def _tail(self) -> str:
        out = self.directory / "serve.out"
        return out.read_text(errors="replace")[-2000:] if out.exists() else ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RunningKms:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_kms(
    directory: Path | str,
    names: tuple[str, ...] = server.DEFAULT_NAMES,
    host: str = "127.0.0.1",
    attempts: int = 3,
) -> RunningKms:
    """Initialise ``directory`` (if needed) and start a server on a free port."""
    path = Path(directory)
    server.init(path, names)
    last: Exception | None = None
    for _ in range(attempts):  # another process may grab the free port before the child binds
        kms = RunningKms(path, free_port(host), host)
        try:
            kms.start()
            return kms
        except KmsStartError as exc:
            last = exc
    raise KmsStartError(f"could not start the key server: {last}")


@contextlib.contextmanager
def start_kms(directory: Path | str, **kwargs: object) -> Iterator[RunningKms]:
    kms = launch_kms(directory, **kwargs)  # type: ignore[arg-type]
    try:
        yield kms
    finally:
        kms.stop()
