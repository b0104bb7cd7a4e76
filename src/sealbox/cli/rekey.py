"""``sealbox rekey``: replace the software-encryption master key, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn

from sealbox.cli.rpc import Rpc

_STEPS = ["CreateNewMasterKey", "RewrapDataEncryptionKeys", "DecommissionOldMasterKey", "Ready"]


@click.command()
@click.option("--provider", "provider_id", type=click.IntRange(1), default=None,
              help="Move the master key to this key provider (external key management).")
@click.option("--internal", is_flag=True, help="Use an internal master key.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("sealbox-data"),
              show_default=True, help="The cluster's data dir (for its TLS certificate).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option("--user", default="admin", show_default=True)
@click.option("--password", envvar="SEALBOX_ADMIN_PASSWORD", prompt=True, hide_input=True,
              help="The admin password (or SEALBOX_ADMIN_PASSWORD).")
def rekey(provider_id: int | None, internal: bool, data_dir: Path, host: str, port: int,
          user: str, password: str) -> None:
    """Rekey the master key (RekeySoftwareEncryptionAtRestMasterKey) and wait for it."""
    if internal == (provider_id is not None):
        raise click.UsageError("give exactly one of --provider ID or --internal")
    api = Rpc(host, port, user, password, data_dir.resolve() / "tls" / "api.crt")
    params: dict[str, object] = {"keyManagementType": "Internal" if internal else "External"}
    if provider_id is not None:
        params["keyProviderID"] = provider_id
    handle = api.call("RekeySoftwareEncryptionAtRestMasterKey", **params)["asyncHandle"]
    result = _follow(api, int(handle))
    if "error" in result:
        err = result["error"]
        raise click.ClickException(f"the rekey failed: {err['name']}: {err['message']}")
    r = result["result"]
    click.echo(r["operation"])
    old = r["keyToDecommission"]["keyID"]
    click.echo(f"new master key {r['newKey']['keyID']} ({r['newKey']['keyManagementType']}); "
               + (f"decommissioned {old}"
                  if r.get("keyToDecommissionState", "Decommissioned") == "Decommissioned" else
                  f"old key {old} NOT yet destroyed: {r.get('reason', '')}"))


def _follow(api: Rpc, handle: int) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"))
    with Progress(*columns) as bar:
        task = bar.add_task(f"rekey (async handle {handle})", total=len(_STEPS), step="")
        while True:
            result = api.call("GetAsyncResult", asyncHandle=handle, keepResult=True)
            details = result.get("details") or {}
            state = "Ready" if result["status"] == "complete" else details.get("state", "")
            done = _STEPS.index(state) + 1 if state in _STEPS else 0
            bar.update(task, completed=done, step=state)
            if result["status"] == "complete":
                return result
            time.sleep(0.2)  # polling interval of an interactive progress display
