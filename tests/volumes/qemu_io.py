"""An interactive ``qemu-io`` on one NBD connection, kept open across API calls: the client an
administrator's change must reach although it connected before the change."""

from __future__ import annotations

import os
import selectors
import subprocess
import time

PROMPT = "qemu-io> "
TIMEOUT = 30.0


class QemuIo:
    """``qemu-io -f raw URI`` reading commands from a pipe; :meth:`run` sends one command and
    returns what qemu-io printed for it (it prints its prompt when it is done)."""

    def __init__(self, uri: str) -> None:
        self.proc = subprocess.Popen(
            ["qemu-io", "-f", "raw", uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        opened = self._until_prompt()
        assert opened == "", f"qemu-io could not open {uri}: {opened}"

    def run(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._until_prompt()

    def _until_prompt(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        out = ""
        while not out.endswith(PROMPT):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"qemu-io gave no prompt (exit {self.proc.poll()}): {out}")
            if self._selector.select(left):
                out += self.proc.stdout.read() or ""
        return out[: -len(PROMPT)]

    def close(self) -> None:
        self._selector.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
