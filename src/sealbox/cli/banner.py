"""The banner ``sealbox up`` prints once the cluster is up: what is true, and a call that works.

Every ``try:`` line names the interpreter that is running sealbox (``sys.executable``): a bare
``python`` is often another interpreter, without the Element SDK. The line fits the cluster's
state: before ``CreateCluster`` (``--no-create``) no method but a few answers, so it forms the
cluster rather than asking for its info.
"""

from __future__ import annotations

import shlex
import sys

import click

from sealbox.cluster.runtime import cluster_address
from sealbox.config import Settings
from sealbox.startup import Started

_FACTORY = "from solidfire.factory import ElementFactory as F; "


def print_banner(started: Started, settings: Settings, source: str) -> None:
    """Print the banner and flush it: once this returns, a generated password has been shown.
    ``source`` names where a given admin password came from (an option or a variable)."""
    lines = [
        f"sealbox is up: Element API at {started.api_url}",
        f"  data dir:   {settings.data_dir} (log: {settings.data_dir / 'sealbox.log'})",
    ]
    if started.cluster_created:
        lines += _created(started, settings, source)
    else:
        lines += _pending(started, settings)
    lines.append("Stop with Ctrl-C.")
    click.echo("\n".join(lines))
    sys.stdout.flush()


def _created(started: Started, settings: Settings, source: str) -> list[str]:
    return [
        f"  admin user: {settings.admin_user}",
        f"  password:   {_password(started, source)}",
        f"  TLS:        self-signed certificate {started.cert_path}",
        f"  volumes:    {started.nbd_address} (NBD, e.g. qemu-img, nbdcopy)",
        *_refused(started),
        "  try:        " + _python(
            f"print(F.create('{settings.host}', '{settings.admin_user}', PASSWORD, "
            f"port={started.api_port}, print_ascii_art=False).get_cluster_info())"),
    ]


def _password(started: Started, source: str) -> str:
    first = started.first
    if first.generated_password is not None:
        return (f"{first.generated_password.reveal().decode()}  "
                "(generated now and shown only once; keep it)")
    if first.created_cluster:
        return f"as set by {source}"
    return "unchanged (set when the cluster was created)"


def _refused(started: Started) -> list[str]:
    """One line when volumes are refused at start, most often because the drives stay locked
    until the external key server hands over the master key."""
    if not started.volumes_refused:
        return []
    if started.waiting_for_keys:
        return [f"  locked:     volumes are refused until the key server answers "
                f"({started.volumes_refused}); sealbox keeps retrying"]
    return [f"  offline:    volumes are refused for now: {started.volumes_refused} "
            "(see ListClusterFaults)"]


def _pending(started: Started, settings: Settings) -> list[str]:
    """Before CreateCluster: no admin and no password exist yet, and no volume can."""
    nodes = list(started.pending_nodes)
    mvip = cluster_address(settings.host)  # as the first start would form it
    return [
        f"  cluster:    not created yet: {len(nodes)} nodes pending ({', '.join(nodes)}), "
        "waiting for CreateCluster",
        "  admin user: none yet: CreateCluster creates it with the username and password it "
        "is given",
        f"  TLS:        self-signed certificate {started.cert_path}",
        f"  volumes:    {started.nbd_address} (once the cluster is created and its drives "
        "added)",
        "  try:        " + _python(
            f"print(F.create('{settings.host}', '{settings.admin_user}', PASSWORD, "
            f"port={started.api_port}, print_ascii_art=False).create_cluster("
            f"mvip='{mvip}', svip='{mvip}', username='{settings.admin_user}', "
            f"password=PASSWORD, nodes={nodes!r}, accept_eula=True))"),
    ]


def _python(code: str) -> str:
    return f'{shlex.quote(sys.executable)} -c "{_FACTORY}{code}"'

