"""A real ``sealbox up`` subprocess on free ports, started and stopped as an operator would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

PASSWORD = "sealbox-test-password"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` different free ports. All are held bound until every one is picked: two
    :func:`free_port` calls in a row return the same port about once in 16,000."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_until_logged(proc: subprocess.Popen[bytes], log: Path, lines: int) -> None:
    """Let a crash-test worker run until its log has ``lines`` lines (then the caller kills it
    with SIGKILL): killing at a point of its progress, never after a fixed sleep."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker died: {proc.stderr.read() if proc.stderr else ''!r}")
        if log.exists() and log.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.002)  # polling interval, not a timing assumption
    raise AssertionError("worker made no progress")


class SealboxProcess:
    def __init__(self, data_dir: Path, extra: Sequence[str] = (), password: str = PASSWORD,
                 drive_size: str = "64MiB", nodes: int = 4,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.password = password
        self.drive_size = drive_size
        self.nodes = nodes
        self.env = dict(env or {})
        self.port, self.nbd_port = free_ports(2)  # never the same port twice
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/json-rpc/12.3"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "sealbox.cli", "up", "--data-dir", str(self.data_dir),
            "--port", str(self.port), "--nbd-port", str(self.nbd_port),
            "--drive-size", self.drive_size, "--nodes", str(self.nodes), *self.extra,
        ]

    def start(self) -> SealboxProcess:
        env = dict(os.environ, SEALBOX_ADMIN_PASSWORD=self.password, PYTHONUNBUFFERED="1",
                   **self.env)
        self.output = []
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        assert self.proc.stdout is not None
        self._read_until_up(self.proc.stdout)
        return self

    def _read_until_up(self, out: IO[str]) -> None:
        os.set_blocking(out.fileno(), False)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = out.readline()
            if line:
                self.output.append(line)
                if line.startswith("Stop with Ctrl-C"):
                    return
                continue
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("sealbox exited at start:\n" + "".join(self.output))
            time.sleep(0.02)
        raise AssertionError("sealbox did not come up:\n" + "".join(self.output))

    def banner_value(self, key: str) -> str:
        for line in self.output:
            m = re.match(rf"\s*{re.escape(key)}:\s+(\S+)", line)
            if m:
                return m.group(1)
        raise KeyError(key)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout is not None:
            rest = self.proc.stdout.read()
            if rest:
                self.output.append(rest)
            self.proc.stdout.close()
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> SealboxProcess:
        self.stop()
        return self.start()

    # --- clients ---------------------------------------------------------------------------
    def element(self, username: str = "admin", password: str | None = None) -> Any:
        from solidfire.factory import ElementFactory

        return ElementFactory.create(
            "127.0.0.1", username, password or self.password, port=self.port,
            print_ascii_art=False,
        )

    def rpc(self, method: str, params: dict[str, Any] | None = None,
            auth: tuple[str, str] | None = None, version: str = "12.3") -> dict[str, Any]:
        """The raw JSON-RPC envelope, as the SDK would send the request."""
        body = {"method": method, "params": params or {}, "id": 1}
        envelope: dict[str, Any] = self.post(body, auth, version).json()
        return envelope

    def post(self, body: Any, auth: tuple[str, str] | None = None,
             version: str = "12.3") -> requests.Response:
        import json

        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return requests.post(
            f"https://127.0.0.1:{self.port}/json-rpc/{version}", data=data,
            auth=auth or ("admin", self.password), verify=False, timeout=30,
        )
