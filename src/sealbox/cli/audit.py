"""``sealbox audit``: the audit log of a data dir, newest last.

Every call of a state-changing method is recorded in the configuration store (time, admin,
method, parameter names, outcome; never values). This reads it, also while ``sealbox up``
runs: SQLite in WAL mode lets a reader in beside the writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sealbox.cluster.audit import AuditLog
from sealbox.store.sqlite import SqliteStore

_COLUMNS = ("time", "user", "method", "params", "outcome", "detail")


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("sealbox-data"),
              show_default=True)
@click.option("--last", type=click.IntRange(1), default=50, show_default=True,
              help="How many of the newest entries to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def audit(data_dir: Path, last: int, as_json: bool) -> None:
    """Show who changed what, and how it ended."""
    db = data_dir.resolve() / "sealbox.db"
    if not db.exists():
        raise click.ClickException(f"no sealbox cluster in {data_dir.resolve()} (no sealbox.db)")
    store = SqliteStore(db)
    try:
        entries = AuditLog(store).entries()[-last:]
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    table = Table(title=f"audit log (last {len(entries)})")
    for column in _COLUMNS:
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(*(", ".join(entry[c]) if c == "params" else str(entry.get(c, ""))
                        for c in _COLUMNS))
    Console().print(table)
