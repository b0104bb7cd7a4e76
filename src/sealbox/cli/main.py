"""The ``sealbox`` command line."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import IO, Any

import click
from click.core import ParameterSource

from sealbox.cli.admin import admin
from sealbox.cli.audit import audit
from sealbox.cli.banner import print_banner
from sealbox.cli.drive import drive
from sealbox.cli.kms import kms
from sealbox.cli.rekey import rekey
from sealbox.cli.status import status
from sealbox.cluster.admins import validate_password
from sealbox.config import MAX_DRIVE_SIZE, MIN_DRIVE_SIZE, Settings, parse_size
from sealbox.daemon import (
    AlreadyRunning,
    acquire_lock,
    check_not_running,
    serve,
    setup_logging,
)
from sealbox.errors import InvalidParameter, SealboxError
from sealbox.kmip.certs import KeyType
from sealbox.listeners import ListenError, Listeners, bind_listeners
from sealbox.secrets import Secret
from sealbox.startup import Started

log = logging.getLogger("sealbox")


class StartupError(click.ClickException):
    """``sealbox up`` cannot start or run (not a usage error): one line, ``sealbox: ...``,
    exit status 1. Usage errors stay click's ``Error: Invalid value ...`` with status 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"sealbox: {self.format_message()}", file=file, err=True)


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if not MIN_DRIVE_SIZE <= size <= MAX_DRIVE_SIZE or size % 4096:
        raise click.BadParameter("a drive must be 64MiB to 8TiB and a multiple of 4KiB")
    return size


def _password(ctx: click.Context, param: click.Parameter, value: str | None) -> Secret | None:
    """Checked as CreateCluster checks it, before anything is created: a password refused
    only after the nodes and drives exist would leave a half-made data dir behind."""
    if value is None:
        return None
    secret = Secret.from_text(value)
    try:
        validate_password(secret)
    except InvalidParameter as e:
        raise click.BadParameter(e.message.split(": ", 1)[-1]) from None
    return secret


def _host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("give an address or a hostname (0.0.0.0: every IPv4 address)")
    return value


@click.group()
@click.version_option(package_name="sealbox")
def main() -> None:
    """sealbox: a storage cluster encrypted at rest, keys on your KMIP servers."""


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False, writable=True),
              default=Path("sealbox-data"), show_default=True,
              help="Where the cluster keeps its configuration and drives.")
@click.option("--host", default="127.0.0.1", show_default=True, callback=_host,
              help="API address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option("--nbd-port", type=click.IntRange(0, 65535), default=10809, show_default=True)
@click.option("--nodes", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--drives-per-node", type=click.IntRange(2, 64), default=3, show_default=True,
              help="One metadata (slice) drive, the rest block drives.")
@click.option("--drive-size", default="1GiB", show_default=True, callback=_size,
              help="Size of each drive file (created sparse).")
@click.option("--no-create", is_flag=True,
              help="Leave the nodes pending; form the cluster with the CreateCluster method.")
@click.option("--no-software-encryption", is_flag=True,
              help="Create the cluster without software encryption at rest.")
@click.option("--admin-password", envvar="SEALBOX_ADMIN_PASSWORD", default=None,
              callback=_password,
              help="Password of the 'admin' user at first start (or SEALBOX_ADMIN_PASSWORD).")
@click.option("--client-key-type", type=click.Choice(["rsa-2048", "ecdsa-p256"]),
              default="rsa-2048", show_default=True,
              help="Key type of the cluster's key pair for KMIP key servers.")
@click.option("--kmip-timeout", type=click.FloatRange(0.1, 300), default=5.0, show_default=True,
              help="Seconds allowed for each KMIP connection attempt and operation.")
@click.option("--monitor-interval", type=click.FloatRange(0.1, 86400), default=30.0,
              show_default=True, help="Seconds between background health checks.")
@click.option("--unlock-retry-max", type=click.FloatRange(0.1, 3600), default=30.0,
              show_default=True,
              help="Longest wait (s) between attempts to fetch the master key at boot.")
@click.option("--key-check-interval", type=click.FloatRange(1, 86400 * 7), default=900.0,
              show_default=True,
              help="Seconds between checks that the external master key is still active.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging to DATA_DIR/sealbox.log.")
def up(data_dir: Path, host: str, port: int, nbd_port: int, nodes: int, drives_per_node: int,
       drive_size: int, no_create: bool, no_software_encryption: bool,
       admin_password: Secret | None, client_key_type: str, kmip_timeout: float,
       monitor_interval: float, unlock_retry_max: float, key_check_interval: float,
       verbose: bool) -> None:
    """Start the cluster (creating it on first start) and serve the Element API."""
    ctx = click.get_current_context()
    if port and port == nbd_port:
        raise click.BadParameter("it must differ from --port", ctx, param_hint="'--nbd-port'")
    settings = Settings(
        data_dir=data_dir.resolve(), host=host, port=port, nbd_port=nbd_port, nodes=nodes,
        drives_per_node=drives_per_node, drive_size=drive_size, create=not no_create,
        software_encryption=not no_software_encryption, admin_password=admin_password,
        client_key_type=KeyType.ECDSA_P256 if client_key_type == "ecdsa-p256" else KeyType.RSA_2048,
        kmip_connect_timeout=min(kmip_timeout, 3.0), kmip_timeout=kmip_timeout,
        monitor_interval=monitor_interval, unlock_retry_max=unlock_retry_max,
        key_check_interval=key_check_interval,
        test_rekey_step_delay=float(os.environ.get("SEALBOX_TEST_REKEY_STEP_DELAY", "0")),
    )
    from_env = ctx.get_parameter_source("admin_password") == ParameterSource.ENVIRONMENT
    source = "SEALBOX_ADMIN_PASSWORD" if from_env else "--admin-password"
    try:
        listeners = _listen(settings)
        _prepare_data_dir(settings, listeners, verbose)
        _run(settings, listeners, source)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers are in place
        raise click.exceptions.Exit(130) from None


def _listen(settings: Settings) -> Listeners:
    """Both ports bound before the data dir is created or touched (see sealbox.listeners)."""
    try:
        return bind_listeners(settings.host, settings.port, settings.nbd_port)
    except ListenError as e:
        try:  # most often the ports are held by a sealbox already running on this data dir
            check_not_running(settings.data_dir)
        except AlreadyRunning as running:
            raise StartupError(str(running)) from None
        raise StartupError(str(e)) from None


def _prepare_data_dir(settings: Settings, listeners: Listeners, verbose: bool) -> None:
    try:
        acquire_lock(settings.data_dir)
        setup_logging(settings.data_dir, verbose)
    except AlreadyRunning as e:
        listeners.close()
        raise StartupError(str(e)) from None
    except OSError as e:
        listeners.close()
        raise StartupError(f"cannot use the data dir {settings.data_dir}: "
                           f"{e.strerror or e}") from None


def _run(settings: Settings, listeners: Listeners, source: str) -> None:
    """Serve until stopped. An unexpected error goes to the log with its traceback; the
    terminal gets one line pointing there."""
    shown: list[bool] = []

    def banner(started: Started) -> None:
        print_banner(started, settings, source)
        shown.append(True)

    try:
        asyncio.run(serve(settings, listeners, banner))
    except Exception as e:
        log.exception("sealbox up failed")
        what = "stopped after an error" if shown else "could not start"
        raise StartupError(
            f"{what}: {_describe(e)} (details in {settings.data_dir / 'sealbox.log'})") from None
    finally:
        listeners.close()  # a no-op once the servers have closed them


def _describe(error: Exception) -> str:
    if isinstance(error, SealboxError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return f"{type(error).__name__}: {error}"


main.add_command(status)
main.add_command(kms)
main.add_command(rekey)
main.add_command(drive)
main.add_command(admin)
main.add_command(audit)
