"""``sealbox up`` as an administrator meets it: refusals are one line and leave nothing behind,
a generated password is always shown before it can be lost, and the banner tells the truth
about the state the cluster is in (and its ``try:`` line works as printed)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sealbox.kms.testing import RunningKms
from tests.ekm.rekey_support import provider, rekey, trust
from tests.support.proc import SealboxProcess

USAGE_ERROR = 2


def _env_without_password() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SEALBOX_ADMIN_PASSWORD"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class GeneratedPassword(SealboxProcess):
    """``sealbox up`` with no admin password given, so that it generates one; :attr:`password`
    is what the banner showed (or its first word, e.g. ``unchanged``, if it showed none)."""

    def start(self) -> GeneratedPassword:
        self.output = []
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=_env_without_password())
        assert self.proc.stdout is not None
        self._read_until_up(self.proc.stdout)
        self.password = self.banner_value("password")
        return self


def _run_up(proc: SealboxProcess, *extra: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One ``sealbox up`` that is expected to refuse to start."""
    return subprocess.run([*proc.command(), *extra], capture_output=True, text=True,
                          env=env or _env_without_password(), timeout=120)


def _listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def _try_line(proc: SealboxProcess) -> str:
    return next(ln for ln in proc.output if ln.strip().startswith("try:")).split("try:", 1)[1]


def _run_try_line(proc: SealboxProcess, password: str) -> subprocess.CompletedProcess[str]:
    """The banner's ``try:`` command, pasted into a shell with the password filled in."""
    command = _try_line(proc).strip().replace("PASSWORD", repr(password))
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)


def _assert_one_line_refusal(out: subprocess.CompletedProcess[str], code: int) -> None:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "password" not in out.stdout


@pytest.mark.parametrize("option", ["--port", "--nbd-port"])
def test_a_taken_port_is_refused_before_anything_is_created(tmp_path: Path,
                                                            option: str) -> None:
    proc = GeneratedPassword(tmp_path / "data")
    taken = proc.port if option == "--port" else proc.nbd_port
    with _listening(taken):
        out = _run_up(proc)
    _assert_one_line_refusal(out, 1)
    assert out.stderr == (
        f"sealbox: cannot listen on 127.0.0.1:{taken} ({option}): address already in use\n")
    assert not proc.data_dir.exists()
    # Once the port is free, the first start is a first start: the password is shown, works.
    try:
        proc.start()
        assert "generated now and shown only once" in "".join(proc.output)
        assert proc.element().get_cluster_info().cluster_info.name == "sealbox"
    finally:
        proc.stop()


def test_an_address_not_of_this_machine_blames_host(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data")
    out = _run_up(proc, "--host", "192.0.2.1")  # TEST-NET-1: never a local address
    _assert_one_line_refusal(out, 1)
    assert out.stderr == (f"sealbox: cannot listen on 192.0.2.1:{proc.port} (--host): "
                          "cannot assign requested address\n")
    assert not proc.data_dir.exists()


@pytest.mark.parametrize("where", ["option", "environment"])
def test_short_admin_password_is_a_usage_error_that_creates_nothing(tmp_path: Path,
                                                                     where: str) -> None:
    proc = SealboxProcess(tmp_path / "data")
    if where == "option":
        out = _run_up(proc, "--admin-password", "short")
    else:
        out = _run_up(proc, env=dict(_env_without_password(), SEALBOX_ADMIN_PASSWORD="short"))
    _assert_one_line_refusal(out, USAGE_ERROR)
    assert out.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--admin-password': it must be 8 to 1024 characters long.")
    assert "short" not in out.stderr  # a password is never echoed, even a refused one
    assert not proc.data_dir.exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--drive-size", "100TiB"],
     "Invalid value for '--drive-size': a drive must be 64MiB to 8TiB and a multiple of 4KiB"),
    (["--drive-size", "99999999999999999999T"],
     "Invalid value for '--drive-size': a drive must be 64MiB to 8TiB and a multiple of 4KiB"),
    (["--nbd-port", "{port}"], "Invalid value for '--nbd-port': it must differ from --port"),
], ids=["drive-size-too-big-for-files", "drive-size-overflows", "same-port-twice"])
def test_bad_option_values_are_usage_errors_that_create_nothing(
        tmp_path: Path, extra: list[str], message: str) -> None:
    proc = SealboxProcess(tmp_path / "data")
    out = _run_up(proc, *[arg.format(port=proc.port) for arg in extra])  # the last one wins
    _assert_one_line_refusal(out, USAGE_ERROR)
    assert out.stderr.splitlines()[-1] == f"Error: {message}"
    assert not proc.data_dir.exists()


@pytest.mark.parametrize("retry", ["generated", "given"])
def test_a_first_start_that_fails_after_forming_the_cluster_shows_a_password_next_time(
        tmp_path: Path, retry: str) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "tls").write_text("not a directory")  # the TLS certificate cannot be made
    proc = GeneratedPassword(data) if retry == "generated" else SealboxProcess(data)
    out = _run_up(proc)  # no password given: one is generated, then the start fails
    _assert_one_line_refusal(out, 1)
    [line] = out.stderr.splitlines()
    assert line.startswith("sealbox: could not start: File exists: ")
    assert line.endswith(f"(details in {data / 'sealbox.log'})")
    assert "Traceback" in (data / "sealbox.log").read_text()
    # It failed after forming the cluster, with a password nobody saw.
    status = subprocess.run(
        [sys.executable, "-m", "sealbox.cli", "status", "--data-dir", str(data), "--json"],
        capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(status.stdout)["cluster"]["name"] == "sealbox"

    (data / "tls").unlink()
    try:
        proc.start()
        shown = ("generated now and shown only once" if retry == "generated"
                 else "as set by SEALBOX_ADMIN_PASSWORD")
        assert shown in "".join(proc.output)
        assert proc.element().get_cluster_info().cluster_info.name == "sealbox"
        proc.restart()  # shown once: the next start does not touch it
        assert "password:   unchanged" in "".join(proc.output)
    finally:
        proc.stop()


def test_try_line_names_the_running_interpreter_and_works_as_printed(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data").start()
    try:
        assert _try_line(proc).strip().startswith(f"{shlex.quote(sys.executable)} -c ")
        out = _run_try_line(proc, proc.password)
        assert out.returncode == 0, out.stderr
        assert "'name': 'sealbox'" in out.stdout or "name='sealbox'" in out.stdout
    finally:
        proc.stop()


def test_no_create_banner_waits_for_create_cluster_and_its_try_line_forms_it(
        tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data", extra=["--no-create"]).start()
    try:
        banner = "".join(proc.output)
        assert "waiting for CreateCluster" in banner
        assert "127.0.1.1, 127.0.1.2, 127.0.1.3, 127.0.1.4" in banner
        assert "password:" not in banner  # no admin, so no password, exists yet
        out = _run_try_line(proc, proc.password)
        assert out.returncode == 0, out.stderr
        info = proc.element().get_cluster_info().cluster_info
        assert info.name == "sealbox" and len(info.ensemble) == 4
    finally:
        proc.stop()



def test_banner_says_volumes_wait_for_the_key_server(tmp_path: Path, own_kms: RunningKms) -> None:
    proc = SealboxProcess(tmp_path / "data", nodes=2, extra=[
        "--drives-per-node", "2", "--unlock-retry-max", "1", "--kmip-timeout", "2"]).start()
    try:
        sf = proc.element()
        pid = provider(sf, own_kms, trust(sf, own_kms), "banner")
        rekey(proc, {"keyManagementType": "External", "keyProviderID": pid})
        assert "locked:" not in "".join(proc.output)
        own_kms.stop()
        proc.restart()
        locked = _banner_line(proc.output, "locked:")
        assert "volumes are refused until the key server answers" in locked
        assert f"key provider {pid}" in locked
    finally:
        proc.stop()


def _banner_line(output: list[str], key: str) -> str:
    lines = [ln for ln in output if ln.strip().startswith(key)]
    assert lines, "".join(output)
    return lines[0]

