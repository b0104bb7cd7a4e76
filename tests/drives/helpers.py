"""Shared helpers of the drive tests: NBD clients, faults, async results, drive files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.proc import SealboxProcess, wait_until

MIB = 1 << 20
SFCLI = Path(sys.executable).parent / "sfcli"


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    return out.stdout


def uri(cluster: SealboxProcess, name: str) -> str:
    return f"nbd://127.0.0.1:{cluster.nbd_port}/{name}"


def write_random(cluster: SealboxProcess, name: str, path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    run("nbdcopy", str(path), uri(cluster, name))
    return data


def read_back(cluster: SealboxProcess, name: str, path: Path) -> bytes:
    path.unlink(missing_ok=True)
    run("nbdcopy", uri(cluster, name), str(path))
    return path.read_bytes()


def drives(cluster: SealboxProcess) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = cluster.rpc("ListDrives")["result"]["drives"]
    return result


def drive(cluster: SealboxProcess, drive_id: int) -> dict[str, Any]:
    return next(d for d in drives(cluster) if d["driveID"] == drive_id)


def drive_path(cluster: SealboxProcess, node: int, slot: int) -> Path:
    return cluster.data_dir / "drives" / f"node{node}" / f"drive{slot}.img"


def faults(cluster: SealboxProcess, which: str = "current") -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = cluster.rpc(
        "ListClusterFaults", {"faultTypes": which})["result"]["faults"]
    return result


def open_fault(cluster: SealboxProcess, code: str, needle: str) -> dict[str, Any] | None:
    return next((f for f in faults(cluster) if f["code"] == code and needle in f["details"]),
                None)


def ever_raised(cluster: SealboxProcess, code: str) -> list[dict[str, Any]]:
    return [f for f in faults(cluster, "all") if f["code"] == code]


def wait_job(cluster: SealboxProcess, handle: int, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        res: dict[str, Any] = cluster.rpc(
            "GetAsyncResult", {"asyncHandle": handle, "keepResult": True})["result"]
        return res if res["status"] == "complete" else None

    res: dict[str, Any] = wait_until(done, timeout, f"async result {handle}")
    assert "error" not in res, res
    return res


def no_drive_faults(cluster: SealboxProcess) -> bool:
    codes = {"driveFailed", "blocksDegraded", "blockServiceUnhealthy", "sliceServiceUnhealthy"}
    return not [f for f in faults(cluster) if f["code"] in codes]


def corrupt_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(2 * 4096))  # both header copies
        f.flush()
        os.fsync(f.fileno())


def sfcli(cluster: SealboxProcess, home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLIDFIRE_")}
    env |= {"HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return run(str(SFCLI), "-m", "127.0.0.1", "-q", str(cluster.port), "-u", "admin",
               "-p", cluster.password, "--nocache", "-j", *args, env=env)


def sealbox_cli(*args: str) -> str:
    return run(sys.executable, "-m", "sealbox.cli", *args)
