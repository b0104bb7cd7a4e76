"""The cluster as one object: the services over one configuration store, and first start."""

from __future__ import annotations

import ipaddress
import logging
import os
import uuid
from dataclasses import dataclass

from sealbox.cluster import formation, mirror_record, topology
from sealbox.cluster.admins import AdminService
from sealbox.cluster.audit import AuditLog
from sealbox.cluster.authkeys import AuthKeys
from sealbox.cluster.certmonitor import CertificateMonitor
from sealbox.cluster.drives import DriveService
from sealbox.cluster.ear import EarService
from sealbox.cluster.faults import FaultService
from sealbox.cluster.jobs import JobService
from sealbox.cluster.keycheck import KeyStateCheck
from sealbox.cluster.keyservers import KeyServerStore, Timeouts
from sealbox.cluster.masterkeys import MasterKeys
from sealbox.cluster.mirror_record import MirrorRecord
from sealbox.cluster.monitor import Monitor
from sealbox.cluster.nodes import NodeService
from sealbox.cluster.passwords import new_password
from sealbox.cluster.rekey import RekeyService
from sealbox.cluster.sear import SearService
from sealbox.cluster.storage import StorageService
from sealbox.cluster.topology import DRIVES, DriveStatus, Layout, Topology
from sealbox.cluster.trust import TrustService
from sealbox.cluster.unlock import Unlocker
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
        self.nodes = NodeService(store, self.jobs)
        self.drives = DriveService(store, self.jobs, self.faults)
        self.trust = TrustService(store, settings.data_dir / "keys", settings.client_key_type)
        self.keyservers = KeyServerStore(
            store, self.trust, Timeouts(settings.kmip_connect_timeout, settings.kmip_timeout)
        )
        self.certificates = CertificateMonitor(store, self.faults)
        self.sear = SearService(store, settings.data_dir / "keys" / "master")
        self.keys = MasterKeys(store, self.sear.internal, self.keyservers, self.audit)
        self.aks = AuthKeys(store, settings.data_dir / "keys" / "ak", self.keyservers,
                            self.audit)
        self.storage = StorageService(store, self.sear, self.keys, self.aks,
                                      MirrorRecord(settings.data_dir / mirror_record.FILE_NAME))
        self.volumes = VolumeService(store, self.storage)
        self.unlocker = Unlocker(store, self.sear, self.keys, self.storage, self.volumes,
                                 self.faults, settings.unlock_retry_max)
        self.drives.unlocked = self.unlocker.unlocked
        self.boot_id = uuid.uuid4().hex
        self.rekey = RekeyService(store, self.sear, self.keys, self.keyservers, self.storage,
                                  self.jobs, self.audit, self.unlocker, self.boot_id,
                                  settings.test_rekey_step_delay)
        self.keycheck = KeyStateCheck(store, self.sear, self.keys, self.faults, self.storage)
        self.key_monitor = Monitor(settings.key_check_interval, [self.keycheck.check])
        self.drives.activators.append(self.storage.activate)
        self.ear = EarService(store, self.storage, self.aks, self.keyservers, self.faults,
                              settings.unlock_retry_max,
                              float(os.environ.get("SEALBOX_TEST_EAR_STEP_DELAY", "0")))
        self.drives.activators.append(self.ear.drive_activated)
        self.unlocker.after_unlock.append(self.ear.kick)
        self._wire_drive_health()
        self.monitor = Monitor(
            settings.monitor_interval, [self.certificates.check, self.volumes.purge_due]
        )
        self.monitor.add(self.drive_health.check)

    def _wire_drive_health(self) -> None:
        from sealbox.cluster.drive_health import DriveHealth
        from sealbox.cluster.drive_ops import DriveOps
        from sealbox.cluster.resync import ResyncService

        ops = DriveOps(self.store, self.storage, self.sear)
        ops.forget_key = self.ear.forget_key
        self.drives.actions = ops
        delay = float(os.environ.get("SEALBOX_TEST_RESYNC_STEP_DELAY", "0"))  # tests only
        self.resync = ResyncService(self.store, self.jobs, self.storage, ops, delay)
        self.drives.after_add.append(self.resync.retry_unfinished)
        self.drive_health = DriveHealth(self.store, self.faults, self.jobs, self.drives,
                                        self.storage, ops, self.resync)
        self.unlocker.fail_drive = self.drive_health.fail

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
                generated = password = new_password()
            nodes = [n["address"] for _, n in txn.list(topology.NODES)]
            addr = cluster_address(s.host)
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
        self.unlocker.start()
        self.ear.start()
        self.jobs.resume_all()
        self.key_monitor.start_later()
        self.drives.refresh_available_fault()
        self.monitor.start()

    def close(self) -> None:
        self.monitor.stop()
        self.resync.closing.set()
        self.drives.closing.set()
        self.key_monitor.stop()
        self.rekey.closing.set()
        self.unlocker.stop()
        self.ear.stop()
        self.jobs.shutdown()
        self.storage.close()
        self.store.close()


def cluster_address(host: str) -> str:
    """The MVIP/SVIP the first start forms the cluster with: CreateCluster wants an IP
    address, so a host name (``localhost``) becomes 127.0.0.1."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return host
