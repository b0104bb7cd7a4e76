"""``sealbox up``: one process that runs one cluster until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealbox.api.server import ApiServer
from sealbox.api.tls import ensure_certificate, server_context
from sealbox.cluster.exports import VolumeCatalog
from sealbox.cluster.runtime import Cluster, FirstStart
from sealbox.config import Settings
from sealbox.nbd.server import NbdServer

log = logging.getLogger("sealbox")


class AlreadyRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class Started:
    api_url: str
    first: FirstStart
    cert_path: Path
    nbd_address: str


def acquire_lock(data_dir: Path) -> int:
    """Hold an exclusive lock on the data dir for the life of the process."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / "sealbox.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(
            f"another sealbox is already running on {data_dir} (it holds "
            f"{data_dir / 'sealbox.lock'}); stop it first or use another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def setup_logging(data_dir: Path, verbose: bool = False) -> None:
    handler = logging.FileHandler(data_dir / "sealbox.log")
    os.chmod(data_dir / "sealbox.log", 0o600)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # PyKMIP logs wire payloads at DEBUG, which may hold key material: never let them through.
    logging.getLogger("kmip").setLevel(logging.WARNING)


def raise_open_file_limit() -> None:
    """Every drive file stays open (plus a socket per client and key server): lift the soft
    limit on open files to the hard one, as storage daemons do; a common soft default of 1024
    is reached by a node with a few hundred drives."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d: %s", soft, error)


async def serve(settings: Settings, on_started: Callable[[Started], None]) -> None:
    raise_open_file_limit()
    # Handlers first: a SIGTERM sent as soon as the banner is out (or during start-up) must
    # stop the cluster cleanly, not kill it with the default action.
    stop = _stop_on_signals()
    cluster = Cluster.open(settings)
    try:
        first = cluster.first_start()
        cluster.start()
        cert, key = ensure_certificate(settings.data_dir / "tls", settings.host)
        api = ApiServer(cluster, settings.host, settings.port, server_context(cert, key))
        port = await api.start()
        nbd = NbdServer(VolumeCatalog(cluster.store, cluster.storage), settings.host,
                        settings.nbd_port)
        nbd.start()
        on_started(Started(f"https://{settings.host}:{port}/json-rpc/12.3", first, cert,
                           f"nbd://{settings.host}:{nbd.port}/VOLUME-NAME"))
        log.info("API listening on %s:%d, NBD on %d", settings.host, port, nbd.port)
        await stop.wait()
        log.info("stopping")
        await api.stop()
        await asyncio.to_thread(nbd.stop)
    finally:
        cluster.close()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (the handlers stay until the process exits)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
