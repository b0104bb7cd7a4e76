"""First start made safe to fail, and the facts the start banner reports.

A generated admin password is shown once, in the banner, and stored only as a hash: a first
start that dies between forming the cluster and printing the banner (a failure, SIGKILL, a power
cut) would leave a cluster nobody can log into. Rolling the creation back cannot cover a crash,
so the guard is a marker file instead: written (durably) *before* the cluster is formed with a
generated password, removed only once the banner is out. A start that finds the marker and a
formed cluster knows its password was never seen and sets it again — to ``--admin-password`` if
given, else to a new generated one — and shows it. Nobody can have used the old password, so
nothing is lost. The marker names no secret; whoever can write the data dir owns the cluster
anyway (see ``sealbox admin reset-password``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sealbox import files
from sealbox.cluster import formation, topology, unlock
from sealbox.cluster.passwords import new_password
from sealbox.cluster.runtime import Cluster, FirstStart
from sealbox.cluster.topology import NodeState

log = logging.getLogger("sealbox")

UNSEEN_MARKER = "admin-password.unseen"  # a marker file, no secret in it


@dataclass(frozen=True)
class Started:
    """What the banner says: where the servers are and the state the cluster is in."""

    api_url: str
    api_port: int
    first: FirstStart
    cert_path: Path
    nbd_address: str
    # Addresses of the nodes waiting for CreateCluster; empty once the cluster exists.
    pending_nodes: tuple[str, ...] = ()
    # Why volumes are refused right now ("" when they are served or there is no cluster yet).
    volumes_refused: str = ""
    # True when they are refused because the key server has not answered yet.
    waiting_for_keys: bool = False

    @property
    def cluster_created(self) -> bool:
        return not self.pending_nodes


def first_start(cluster: Cluster) -> FirstStart:
    """``cluster.first_start()`` under the unseen-password guard (module docstring)."""
    settings = cluster.settings
    marker = settings.data_dir / UNSEEN_MARKER
    created = _cluster_exists(cluster)
    if marker.exists():
        if created:
            return _issue_password_again(cluster)
        _remove(marker)  # the last start died before forming the cluster: nothing to redo
    if settings.create and settings.admin_password is None and not created:
        _write_marker(marker)
    return cluster.first_start()


def password_shown(data_dir: Path) -> None:
    """Call once the banner (with any generated password) is out."""
    _remove(data_dir / UNSEEN_MARKER)


def describe(cluster: Cluster, api_port: int, nbd_port: int, first: FirstStart,
             cert_path: Path) -> Started:
    """The banner's facts, read once the servers run (the first unlock attempt is over)."""
    host = cluster.settings.host
    pending = _pending_nodes(cluster)
    refused = "" if pending or cluster.storage.engine is not None else (
        cluster.storage.unavailable_reason or "the volumes are not open yet")
    return Started(
        api_url=f"https://{_url_host(host)}:{api_port}/json-rpc/12.3", api_port=api_port,
        first=first, cert_path=cert_path,
        nbd_address=f"nbd://{_url_host(host)}:{nbd_port}/VOLUME-NAME",
        pending_nodes=pending, volumes_refused=refused,
        waiting_for_keys=bool(refused) and _unlock_waits_for_keys(cluster),
    )


def _cluster_exists(cluster: Cluster) -> bool:
    with cluster.store.read() as txn:
        return formation.get_cluster(txn) is not None


def _unlock_waits_for_keys(cluster: Cluster) -> bool:
    """The boot unlock's own fault (not a key-state warning of another subject) is open: the
    drives stay locked until a key server hands over their keys."""
    with cluster.store.read() as txn:
        return unlock.SUBJECT in cluster.faults.open_subjects(txn, unlock.CODE)


def _pending_nodes(cluster: Cluster) -> tuple[str, ...]:
    if _cluster_exists(cluster):
        return ()
    with cluster.store.read() as txn:
        return tuple(n["address"] for _, n in txn.list(topology.NODES)
                     if n["state"] == NodeState.PENDING)


def _issue_password_again(cluster: Cluster) -> FirstStart:
    settings = cluster.settings
    generated = None
    password = settings.admin_password
    if password is None:
        generated = password = new_password()
    with cluster.store.write() as txn:
        cluster.admins.reset_password(txn, None, password)
    cluster.audit.record("local:sealbox-up", "ResetClusterAdminPassword", ["password"],
                         "success", "the first start ended before its password was shown")
    log.warning("the first start ended before the admin password was shown: it is set again")
    return FirstStart(True, generated)


def _write_marker(marker: Path) -> None:
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        files.write_fully(fd, b"the admin password generated at first start was not shown yet\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    files.sync_directory(marker.parent)  # durable before the cluster is formed


def _remove(marker: Path) -> None:
    if marker.exists():
        marker.unlink()
        files.sync_directory(marker.parent)


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host
