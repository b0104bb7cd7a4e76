"""``sealbox up``: one process that runs one cluster until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from sealbox import startup
from sealbox.api.server import ApiServer
from sealbox.api.tls import ensure_certificate, server_context
from sealbox.cluster.exports import VolumeCatalog
from sealbox.cluster.runtime import Cluster
from sealbox.config import Settings
from sealbox.listeners import Listeners
from sealbox.nbd.server import NbdServer
from sealbox.startup import Started

log = logging.getLogger("sealbox")


class AlreadyRunning(RuntimeError):
    pass


def acquire_lock(data_dir: Path) -> int:
    """Hold an exclusive lock on the data dir for the life of the process."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / "sealbox.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(_running_message(data_dir)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def check_not_running(data_dir: Path) -> None:
    """Raise :class:`AlreadyRunning` if a sealbox holds the data dir's lock. Creates nothing
    (for a start that must fail before it touches the disk)."""
    try:
        fd = os.open(data_dir / "sealbox.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or no data dir): nothing runs there
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AlreadyRunning(_running_message(data_dir)) from None
    finally:
        os.close(fd)


def _running_message(data_dir: Path) -> str:
    return (f"another sealbox is already running on {data_dir} (it holds "
            f"{data_dir / 'sealbox.lock'}); stop it first or use another --data-dir")


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


async def serve(settings: Settings, listeners: Listeners,
                on_started: Callable[[Started], None]) -> None:
    """Run the cluster on the already bound ``listeners`` until SIGINT or SIGTERM (the caller
    closes them if this fails before the servers own them).

    ``on_started`` prints the banner; only once it has returned is a generated password taken
    as shown (see :mod:`sealbox.startup`)."""
    raise_open_file_limit()
    # Handlers first: a SIGTERM sent as soon as the banner is out (or during start-up) must
    # stop the cluster cleanly, not kill it with the default action.
    stop = _stop_on_signals()
    cluster = Cluster.open(settings)
    try:
        first = startup.first_start(cluster)
        cluster.start()
        cert, key = ensure_certificate(settings.data_dir / "tls", settings.host)
        api = ApiServer(cluster, settings.host, settings.port, server_context(cert, key))
        catalog = VolumeCatalog(cluster.store, cluster.storage, cluster.volumes.gates)
        nbd = NbdServer(catalog, settings.host, settings.nbd_port)
        try:
            port = await api.start(listeners.api)
            nbd.start(listeners.nbd)
            on_started(startup.describe(cluster, port, nbd.port, first, cert))
            startup.password_shown(settings.data_dir)
            log.info("API listening on %s:%d, NBD on %d", settings.host, port, nbd.port)
            await stop.wait()
            log.info("stopping")
        finally:
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
