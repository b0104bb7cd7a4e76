"""The cluster as one object: the services over one configuration store, and first start."""

from __future__ import annotations

import ipaddress
import logging
import secrets as pysecrets
from dataclasses import dataclass

from sealbox.cluster import formation, topology
from sealbox.cluster.admins import AdminService
from sealbox.cluster.audit import AuditLog
from sealbox.cluster.certmonitor import CertificateMonitor
from sealbox.cluster.drives import DriveService
from sealbox.cluster.faults import FaultService
from sealbox.cluster.jobs import JobService
from sealbox.cluster.keyservers import KeyServerStore, Timeouts
from sealbox.cluster.monitor import Monitor
from sealbox.cluster.sear import SearService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DRIVES, DriveStatus, Layout, Topology
from sealbox.cluster.trust import TrustService
from sealbox.cluster.volumes import VolumeService
from sealbox.config import Settings
from sealbox.secrets import Secret
from sealbox.store.base import ConfigStore
from sealbox.store.sqlite import SqliteStore

log = logging.getLogger("sealbox.cluster")


@dataclass(frozen=True)
class FirstStart:
    """What the first start did, for the operator's banner."""

    created_cluster: bool
    generated_password: Secret | None


class Cluster:
    def __init__(self, settings: Settings, store: ConfigStore) -> None:
        self.settings = settings
        self.store = store
        self.faults = FaultService(store)
        self.jobs = JobService(store)
        self.admins = AdminService(store)
        self.audit = AuditLog(store)
        self.topology = Topology(store)
        self.drives = DriveService(store, self.jobs, self.faults)
        self.trust = TrustService(store, settings.data_dir / "keys", settings.client_key_type)
        self.keyservers = KeyServerStore(
            store, self.trust, Timeouts(settings.kmip_connect_timeout, settings.kmip_timeout)
        )
        self.certificates = CertificateMonitor(store, self.faults)
        self.sear = SearService(store, settings.data_dir / "keys" / "master")
        self.storage = StorageService(store, self.sear)
        self.volumes = VolumeService(store, self.storage)
        self.drives.activators.append(self.storage.activate)
        self.monitor = Monitor(
            settings.monitor_interval, [self.certificates.check, self.volumes.purge_due]
        )

    @classmethod
    def open(cls, settings: Settings) -> Cluster:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(settings, SqliteStore(settings.data_dir / "sealbox.db"))

    def first_start(self) -> FirstStart:
        """Provision nodes and drives, and (unless ``--no-create``) form the cluster as
        CreateCluster would and add every drive, so a new cluster is usable at once."""
        s = self.settings
        with self.store.write() as txn:
            if not txn.list(topology.NODES):
                layout = Layout(s.nodes, s.drives_per_node, s.drive_size)
                topology.provision(txn, s.data_dir, layout)
            if not s.create or formation.get_cluster(txn) is not None:
                return FirstStart(False, None)
            generated = None
            password = s.admin_password
            if password is None:
                generated = password = Secret.from_text(pysecrets.token_urlsafe(18))
            nodes = [n["address"] for _, n in txn.list(topology.NODES)]
            addr = _address(s.host)
            formation.create_cluster(txn, self.admins, formation.ClusterSpec(
                mvip=addr, svip=addr, username=s.admin_user, password=password,
                nodes=nodes, software_encryption=s.software_encryption,
            ))
            self.sear.initialise(txn, s.software_encryption)
            drives = [d for _, d in txn.list(DRIVES)]
            for doc in drives:
                doc["status"] = str(DriveStatus.ACTIVE)
                txn.put(DRIVES, doc["driveID"], doc)
        for doc in drives:
            for activate in self.drives.activators:
                activate(doc)
        log.info("cluster created with %d nodes and %d drives", s.nodes, len(drives))
        return FirstStart(True, generated)

    def start(self) -> None:
        self.trust.remove_stray_keys()
        self.storage.start()
        self.volumes.reconcile()
        self.jobs.resume_all()
        self.drives.refresh_available_fault()
        self.monitor.start()

    def close(self) -> None:
        self.monitor.stop()
        self.jobs.shutdown()
        self.storage.close()
        self.store.close()


def _address(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return host
