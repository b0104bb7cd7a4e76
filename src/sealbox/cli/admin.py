"""``sealbox admin reset-password``: a new password for a cluster admin, without the API.

The way back in when every admin password is lost: whoever can read and write the data dir
already holds the whole cluster (the configuration store, the drives, the internal master key
file), so a password reset needs no other proof. It refuses while ``sealbox up`` runs on the
data dir (it takes the same lock): the running cluster keeps verified passwords in memory, so
the old password would keep working until a restart. With the cluster up, ``ModifyClusterAdmin``
changes a password over the API. The reset is recorded in the audit log.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import click

from sealbox.cluster.admins import AdminService
from sealbox.cluster.audit import AuditLog
from sealbox.cluster.passwords import new_password
from sealbox.daemon import AlreadyRunning, acquire_lock
from sealbox.errors import InvalidParameter, NotFound, NotPermitted
from sealbox.secrets import Secret
from sealbox.startup import password_shown
from sealbox.store.sqlite import SqliteStore


@click.group()
def admin() -> None:
    """Cluster admins (see also AddClusterAdmin, ModifyClusterAdmin, RemoveClusterAdmin)."""


@admin.command("reset-password")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("sealbox-data"),
              show_default=True)
@click.option("--username", default=None,
              help="The admin to reset. Default: the primary admin (the one the cluster was "
                   "created with).")
@click.option("--password", envvar="SEALBOX_ADMIN_PASSWORD", default=None,
              help="The new password (or SEALBOX_ADMIN_PASSWORD). Default: generate one and "
                   "print it once.")
def reset_password(data_dir: Path, username: str | None, password: str | None) -> None:
    """Set a new password for a cluster admin; sealbox must be stopped."""
    data_dir = data_dir.resolve()
    db = data_dir / "sealbox.db"
    if not db.exists():
        raise click.ClickException(f"no sealbox cluster in {data_dir} (no sealbox.db)")
    try:
        lock = acquire_lock(data_dir)
    except AlreadyRunning:
        raise click.ClickException(
            f"sealbox is running on {data_dir}: stop it first, or change the password over the "
            "API with ModifyClusterAdmin") from None
    generated = password is None
    new = new_password() if password is None else Secret.from_text(password)
    store = SqliteStore(db)
    try:
        with store.write() as txn:
            doc = AdminService(store).reset_password(txn, username, new)
        AuditLog(store).record(
            f"local:{getpass.getuser()}", "ResetClusterAdminPassword", ["password"], "success",
            f"clusterAdminID={doc['clusterAdminID']} (sealbox admin reset-password)")
    except InvalidParameter as e:
        raise click.BadParameter(str(e), param_hint="--password") from None
    except (NotFound, NotPermitted) as e:
        raise click.ClickException(str(e)) from None
    finally:
        store.close()
        os.close(lock)
    click.echo(f"password of cluster admin {doc['clusterAdminID']} ('{doc['username']}') reset")
    if generated:
        click.echo(f"  password:   {new.reveal().decode()}  (generated now and shown only once; "
                   "keep it)")
    # Whatever first-start password was never shown is superseded by this one: the next
    # `sealbox up` must not replace it (sealbox.startup).
    password_shown(data_dir)
