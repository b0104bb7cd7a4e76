"""The server as real NBD clients (qemu-img, qemu-io, nbdcopy, nbdinfo) see it."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sealbox.nbd.memory import DictCatalog, MemoryExport
from sealbox.nbd.server import NbdServer
from tests.nbd.nbd_raw import VOL_SIZE

TIMEOUT = 30


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


def ok(*cmd: str) -> str:
    result = run(*cmd)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def random_file(tmp_path: Path) -> Path:
    path = tmp_path / "random.img"
    path.write_bytes(os.urandom(VOL_SIZE))
    return path


def test_qemu_img_convert_in_and_out(
    uri: Callable[[str], str], vol: MemoryExport, random_file: Path, tmp_path: Path
) -> None:
    ok("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(random_file), uri("vol"))
    assert vol.getvalue() == random_file.read_bytes()
    out = tmp_path / "out.img"
    ok("qemu-img", "convert", "-f", "raw", "-O", "raw", uri("vol"), str(out))
    assert out.read_bytes() == random_file.read_bytes()


def test_nbdcopy_in_and_out(
    uri: Callable[[str], str], vol: MemoryExport, random_file: Path, tmp_path: Path
) -> None:
    ok("nbdcopy", str(random_file), uri("vol"))
    assert vol.getvalue() == random_file.read_bytes()
    out = tmp_path / "out.img"
    ok("nbdcopy", uri("vol"), str(out))
    assert out.read_bytes() == random_file.read_bytes()


def test_nbdinfo_lists_available_exports_with_sizes(server: NbdServer) -> None:
    result = run("nbdinfo", "--list", f"nbd://127.0.0.1:{server.port}")
    sizes = dict(re.findall(r'export="([^"]*)":\n\texport-size: (\d+)', result.stdout))
    assert sizes == {"vol": str(VOL_SIZE), "other": str(1024 * 1024)}
    # nbdinfo names the one export it could not open, and fails for it.
    assert "for export: locked" in result.stderr
    assert result.returncode != 0


def test_nbdinfo_lists_all_when_all_available(catalog: DictCatalog, server: NbdServer) -> None:
    catalog.remove("locked")
    listing = ok("nbdinfo", "--list", f"nbd://127.0.0.1:{server.port}")
    assert 'export="vol"' in listing and "export-size: 4194304" in listing
    assert 'export="other"' in listing and "export-size: 1048576" in listing


def test_unavailable_export_reason_reaches_clients(uri: Callable[[str], str]) -> None:
    reason = "drives are locked: key server kms-1 unreachable"
    qemu = run("qemu-img", "info", uri("locked"))
    assert qemu.returncode != 0
    assert f"server reported: locked: {reason}" in qemu.stderr
    # libnbd prints the server's message only in its debug output.
    env = dict(os.environ, LIBNBD_DEBUG="1")
    info = run("nbdinfo", uri("locked"), env=env)
    assert info.returncode != 0
    assert f"server error message: locked: {reason}" in info.stderr


def test_unknown_export_is_refused(uri: Callable[[str], str]) -> None:
    qemu = run("qemu-img", "info", uri("nope"))
    assert qemu.returncode != 0
    assert "no export named 'nope'" in qemu.stderr


def test_default_export_needs_exactly_one(catalog: DictCatalog, server: NbdServer) -> None:
    default = f"nbd://127.0.0.1:{server.port}"
    assert run("nbdinfo", "--size", default).returncode != 0
    catalog.remove("other")
    catalog.remove("locked")
    assert ok("nbdinfo", "--size", default).strip() == str(VOL_SIZE)


def test_qemu_io_unaligned_write_keeps_neighbours(
    uri: Callable[[str], str], vol: MemoryExport
) -> None:
    before = vol.getvalue()
    ok(
        "qemu-io", "-f", "raw", uri("vol"),
        "-c", "write -P 0xab 1000 3000",
        "-c", "read -P 0xab 1000 3000",
    )  # fmt: skip
    after = vol.getvalue()
    assert after[1000:4000] == b"\xab" * 3000
    assert after[:1000] == before[:1000]
    assert after[4000:] == before[4000:]


def test_flush_and_fua_reach_the_export(uri: Callable[[str], str], vol: MemoryExport) -> None:
    ok("qemu-io", "-f", "raw", uri("vol"), "-c", "write -f -P 0x11 0 4096", "-c", "flush")
    assert vol.fua_writes >= 1
    assert vol.flushes >= 1


def test_trim_and_write_zeroes_read_back_as_zeroes(
    uri: Callable[[str], str], vol: MemoryExport
) -> None:
    before = vol.getvalue()
    ok(
        "qemu-io", "-f", "raw", uri("vol"),
        "-c", "discard 65536 65536",
        "-c", "write -z 300000 5000",
        "-c", "read -P 0 65536 65536",
        "-c", "read -P 0 300000 5000",
    )  # fmt: skip
    after = vol.getvalue()
    assert after[65536:131072] == bytes(65536)
    assert after[300000:305000] == bytes(5000)
    assert after[:65536] == before[:65536]
    assert after[131072:300000] == before[131072:300000]
    assert after[305000:] == before[305000:]
    assert vol.trims >= 1 and vol.zero_writes >= 1
