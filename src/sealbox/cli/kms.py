"""``sealbox kms``: run the bundled local KMIP key server (PyKMIP's demonstration server).

sealbox kms init --dir D
sealbox kms serve --dir D [--port 5696] [--host 127.0.0.1]
sealbox kms sign-csr --dir D --csr FILE|- [--out FILE]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

import click

from sealbox.errors import SealboxError
from sealbox.kms import server as kms_server

T = TypeVar("T")

_DIR = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Key server directory (CA, certificates, configuration, database).",
)


@click.group(name="kms")
def kms() -> None:
    """Run a local KMIP key server for trying out external key management."""


@kms.command()
@_DIR
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="HOST",
    help="Host name or IP address for the server certificate (repeatable; "
    "default 127.0.0.1 and localhost).",
)
def init(directory: Path, names: tuple[str, ...]) -> None:
    """Create the CA, the server certificate and the server configuration in DIR."""
    layout = kms_server.KmsLayout(directory.resolve())
    if layout.is_initialized():
        click.echo(f"{layout.root} is already initialized; CA: {layout.ca_cert}")
        return
    _run(lambda: kms_server.init(directory, names or kms_server.DEFAULT_NAMES))
    click.echo(f"initialized {layout.root}; CA certificate: {layout.ca_cert}")


@kms.command()
@_DIR
@click.option("--port", default=kms_server.DEFAULT_PORT, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
def serve(directory: Path, port: int, host: str) -> None:
    """Serve KMIP over mutual TLS 1.2 until SIGTERM or Ctrl-C."""

    def listening() -> None:
        click.echo(f"serving KMIP on {host}:{port} from {directory}", err=True)

    _run(lambda: kms_server.serve(directory, port=port, host=host, on_listening=listening))
    click.echo("stopped", err=True)


@kms.command("sign-csr")
@_DIR
@click.option(
    "--csr",
    "csr_file",
    required=True,
    type=click.File("r"),
    help="CSR file in PEM or base64 DER, or - for standard input.",
)
@click.option("--out", "out_file", type=click.File("w"), default="-", help="Default: stdout.")
def sign_csr(directory: Path, csr_file: TextIO, out_file: TextIO) -> None:
    """Sign a client CSR with the local CA (clientAuth, valid one year)."""
    csr_text = csr_file.read()
    pem = _run(lambda: kms_server.sign_csr(directory, csr_text))
    out_file.write(pem.decode("ascii"))


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except SealboxError as exc:
        raise click.ClickException(exc.message) from exc


if __name__ == "__main__":
    sys.exit(kms())
