"""The ``sealbox`` command line."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from sealbox.cli.admin import admin
from sealbox.cli.audit import audit
from sealbox.cli.drive import drive
from sealbox.cli.kms import kms
from sealbox.cli.rekey import rekey
from sealbox.cli.status import status
from sealbox.config import Settings, parse_size
from sealbox.daemon import AlreadyRunning, Started, acquire_lock, serve, setup_logging
from sealbox.kmip.certs import KeyType
from sealbox.secrets import Secret


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if size < 64 << 20 or size % 4096:
        raise click.BadParameter("a drive must be at least 64MiB and a multiple of 4KiB")
    return size


@click.group()
@click.version_option(package_name="sealbox")
def main() -> None:
    """sealbox: a storage cluster encrypted at rest, keys on your KMIP servers."""


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("sealbox-data"),
              show_default=True, help="Where the cluster keeps its configuration and drives.")
@click.option("--host", default="127.0.0.1", show_default=True, help="API address.")
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
       admin_password: str | None, client_key_type: str, kmip_timeout: float,
       monitor_interval: float, unlock_retry_max: float, key_check_interval: float,
       verbose: bool) -> None:
    """Start the cluster (creating it on first start) and serve the Element API."""
    settings = Settings(
        data_dir=data_dir.resolve(), host=host, port=port, nbd_port=nbd_port, nodes=nodes,
        drives_per_node=drives_per_node, drive_size=drive_size, create=not no_create,
        software_encryption=not no_software_encryption,
        admin_password=Secret.from_text(admin_password) if admin_password else None,
        client_key_type=KeyType.ECDSA_P256 if client_key_type == "ecdsa-p256" else KeyType.RSA_2048,
        kmip_connect_timeout=min(kmip_timeout, 3.0), kmip_timeout=kmip_timeout,
        monitor_interval=monitor_interval, unlock_retry_max=unlock_retry_max,
        key_check_interval=key_check_interval,
        test_rekey_step_delay=float(os.environ.get("SEALBOX_TEST_REKEY_STEP_DELAY", "0")),
    )
    try:
        acquire_lock(settings.data_dir)
    except AlreadyRunning as e:
        raise click.ClickException(str(e)) from None
    setup_logging(settings.data_dir, verbose)
    source = "SEALBOX_ADMIN_PASSWORD" if os.environ.get("SEALBOX_ADMIN_PASSWORD") else (
        "--admin-password")
    asyncio.run(serve(settings, lambda s: _banner(s, settings, source)))


def _banner(started: Started, settings: Settings, source: str) -> None:
    first = started.first
    click.echo(f"sealbox is up: Element API at {started.api_url}")
    click.echo(f"  data dir:   {settings.data_dir} (log: {settings.data_dir / 'sealbox.log'})")
    if not first.created_cluster and not settings.create:
        click.echo("  cluster:    waiting for CreateCluster (nodes are pending)")
    click.echo(f"  admin user: {settings.admin_user}")
    if first.generated_password is not None:
        click.echo(f"  password:   {first.generated_password.reveal().decode()}  "
                   "(generated now and shown only once; keep it)")
    elif first.created_cluster:
        click.echo(f"  password:   as set by {source}")
    else:
        click.echo("  password:   unchanged (set when the cluster was created)")
    click.echo(f"  TLS:        self-signed certificate {started.cert_path}")
    click.echo(f"  volumes:    {started.nbd_address} (NBD, e.g. qemu-img, nbdcopy)")
    host, port = settings.host, started.api_url.split(":")[2].split("/")[0]
    click.echo("  try:        python -c \"from solidfire.factory import ElementFactory as F; "
               f"print(F.create('{host}', 'admin', PASSWORD, port={port}, "
               "print_ascii_art=False).get_cluster_info())\"")
    click.echo("Stop with Ctrl-C.")
    sys.stdout.flush()


main.add_command(status)
main.add_command(kms)
main.add_command(rekey)
main.add_command(drive)
main.add_command(admin)
main.add_command(audit)
