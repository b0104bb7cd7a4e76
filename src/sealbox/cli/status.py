"""``sealbox status``: nodes, drives, faults and encryption state of a data dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sealbox.cluster import formation
from sealbox.cluster.faults import FaultFilter, FaultService
from sealbox.cluster.rekey_decommission import ABANDONED, PENDING
from sealbox.cluster.resync import running_drive_jobs
from sealbox.cluster.sear import COLL as SEAR
from sealbox.cluster.sear import key_info
from sealbox.cluster.topology import Topology, drive_info
from sealbox.store.sqlite import SqliteStore


def collect(data_dir: Path) -> dict[str, Any]:
    db = data_dir / "sealbox.db"
    if not db.exists():
        raise click.ClickException(f"no sealbox cluster in {data_dir} (no sealbox.db)")
    store = SqliteStore(db)
    try:
        with store.read() as txn:
            cluster = formation.get_cluster(txn)
            sear = txn.get(SEAR, 0) or {}
        topo = Topology(store)
        return {
            "cluster": None if cluster is None else {
                k: cluster[k] for k in ("name", "uuid", "mvip", "svip", "createTime")
            },
            "encryption": {
                "softwareEncryptionAtRestState":
                    None if cluster is None else cluster["softwareEncryptionAtRestState"],
                "encryptionAtRestState":
                    None if cluster is None else cluster["encryptionAtRestState"],
                # identifiers only (where the master key is held), never key bytes
                "masterKeyInfo": key_info(sear["keys"][sear["currentKeyID"]])
                    if sear.get("currentKeyID") else None,
                "rekey": _rekey_state(sear.get("rekey")),
                # old master keys a rekey could not destroy yet, or gave up on (identifiers)
                "pendingDecommission": [_old_key(e) for e in
                                        (sear.get(PENDING) or {}).values()],
                "abandonedKeys": [_old_key(e) for e in (sear.get(ABANDONED) or {}).values()],
            },
            "nodes": [
                {k: n[k] for k in ("nodeID", "name", "address", "state")} for n in topo.nodes()
            ],
            "drives": [drive_info(d) for d in topo.drives()],
            "faults": FaultService(store).list(FaultFilter.CURRENT),
            "driveJobs": running_drive_jobs(store),
        }
    finally:
        store.close()


def _rekey_state(rekey: dict[str, Any] | None) -> dict[str, Any] | None:
    """A rekey in progress: its job and how far it got (a phase of ``cluster/rekey.py``; from
    ``committed`` on, the new key has taken over)."""
    if not rekey:
        return None
    return {"asyncHandle": rekey.get("jobID"), "phase": rekey.get("phase"),
            "newKeyID": rekey.get("newKeyID"), "oldKeyID": rekey.get("oldKeyID")}


def _old_key(entry: dict[str, Any]) -> dict[str, Any]:
    key = entry["key"]
    return {"keyID": key["keyID"], "keyManagementType": key["keyManagementType"],
            "keyProviderID": key.get("keyProviderID"), "kmipUID": key.get("kmipUID"),
            "since": entry.get("since"), "abandonedTime": entry.get("abandonedTime"),
            "lastError": entry.get("lastError")}


def _table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> Table:
    table = Table(title=title)
    for col in cols:
        table.add_column(col, overflow="fold")  # wrap long details, never cut them
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in cols))
    return table


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("sealbox-data"),
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(data_dir: Path, as_json: bool) -> None:
    """Show the cluster's nodes, drives, faults and encryption state."""
    info = collect(data_dir.resolve())
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    con = Console()
    c = info["cluster"]
    con.print(f"[bold]cluster[/]: {c['name']} {c['uuid']}" if c else
              "[bold]cluster[/]: not created (waiting for CreateCluster)")
    enc = info["encryption"]
    con.print(f"software encryption at rest: {enc['softwareEncryptionAtRestState']}; "
              f"hardware encryption at rest: {enc['encryptionAtRestState']}")
    key = enc["masterKeyInfo"]
    if key is not None:
        held = (f"key provider {key['keyProviderID']}" if key.get("keyProviderID") is not None
                else "this data dir")
        con.print(f"master key: {key['keyID']} ({key['keyManagementType']}, held by {held}, "
                  f"created {key['keyCreatedTime']})")
    for old in enc["pendingDecommission"]:
        error = old["lastError"] or {}
        con.print(f"[bold]old master key not yet destroyed[/]: {old['keyID']} (provider "
                  f"{old['keyProviderID']}, since {old['since']}; last error "
                  f"{error.get('name', '?')}: {error.get('message', '')}); retried in the "
                  "background")
    for old in enc["abandonedKeys"]:
        con.print(f"old master key given up on: {old['keyID']} (provider "
                  f"{old['keyProviderID']}, key server's ID {old['kmipUID']}, at "
                  f"{old['abandonedTime']}): destroy it on its key server by hand")
    if enc["rekey"] is not None:
        rk = enc["rekey"]
        con.print(f"[bold]rekey in progress[/]: async handle {rk['asyncHandle']}, phase "
                  f"{rk['phase']} (GetAsyncResult for details)")
    con.print(_table("nodes", info["nodes"], ["nodeID", "name", "address", "state"]))
    con.print(_table("drives", info["drives"],
                     ["driveID", "nodeID", "type", "status", "capacity", "serial"]))
    con.print(_table("current faults", info["faults"],
                     ["clusterFaultID", "severity", "code", "details", "date"]))
    con.print(_table("drive jobs (resync progress)", [
        {"asyncHandle": j["asyncHandle"], "type": j["resultType"], "params": j["params"],
         "progress": j["details"]} for j in info["driveJobs"]],
        ["asyncHandle", "type", "params", "progress"]))
