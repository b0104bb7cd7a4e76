"""``sealbox drive``: hot-plug a new drive file into a node.

``sealbox drive insert`` works whether or not ``sealbox up`` runs on the data dir: it formats a
new drive file under ``DATA_DIR/drives/node<N>/`` and records it ``available`` in the
configuration store (SQLite in WAL mode takes a second writer process; the running cluster
sees the drive at its next health check and raises ``driveAvailable``). Add it with AddDrives.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from sealbox.cluster.topology import DRIVES, NODES, DriveRole, add_drive
from sealbox.config import parse_size
from sealbox.store.sqlite import SqliteStore


@click.group()
def drive() -> None:
    """Drives of a node (see also ListDrives, AddDrives, RemoveDrives)."""


@drive.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("sealbox-data"),
              show_default=True)
@click.option("--node", "node_id", type=click.IntRange(1), required=True,
              help="The node ID to insert the drive into (see ListActiveNodes).")
@click.option("--size", default="1GiB", show_default=True, help="Size of the drive file.")
@click.option("--role", type=click.Choice(["block", "slice"]), default="block",
              show_default=True, help="slice: a metadata drive; block: a data drive.")
@click.option("--json", "as_json", is_flag=True, help="Print the new drive as JSON.")
def insert(data_dir: Path, node_id: int, size: str, role: str, as_json: bool) -> None:
    """Insert a new, empty drive into a node; it appears as 'available' in ListDrives."""
    try:
        nbytes = parse_size(size)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--size") from None
    if nbytes < 64 << 20 or nbytes % 4096:
        raise click.BadParameter("a drive must be at least 64MiB and a multiple of 4KiB",
                                 param_hint="--size")
    data_dir = data_dir.resolve()
    db = data_dir / "sealbox.db"
    if not db.exists():
        raise click.ClickException(f"no sealbox cluster in {data_dir} (no sealbox.db)")
    store = SqliteStore(db)
    try:
        with store.write() as txn:
            if txn.get(NODES, node_id) is None:
                raise click.ClickException(f"node {node_id} does not exist (see ListAllNodes)")
            slots = [d["slot"] for _, d in txn.list(DRIVES) if d["nodeID"] == node_id]
            slot = max(slots, default=-1) + 1
            path = data_dir / "drives" / f"node{node_id}" / f"drive{slot}.img"
            while path.exists():  # a file left behind by a drive RemoveDrives forgot
                slot += 1
                path = path.with_name(f"drive{slot}.img")
            drive_id = add_drive(txn, node_id, slot, DriveRole(role), path, nbytes)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"driveID": drive_id, "nodeID": node_id, "path": str(path)}))
    else:
        click.echo(f"drive {drive_id} inserted into node {node_id} ({role}, {path}); "
                   "add it with AddDrives")
