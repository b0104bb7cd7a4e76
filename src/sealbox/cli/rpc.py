"""A small Element JSON-RPC client for the command line (standard library only).

It trusts the cluster's own self-signed certificate from the data dir, so the CLI talks TLS
with verification rather than turning it off.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click


class Rpc:
    def __init__(self, host: str, port: int, user: str, password: str, cafile: Path | None):
        self._url = f"https://{host}:{port}/json-rpc/12.3"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        if cafile is not None and cafile.exists():
            self._ctx = ssl.create_default_context(cafile=str(cafile))
        else:
            raise click.ClickException(
                f"cannot verify the API's certificate: {cafile} does not exist (use --data-dir)"
            )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        body = json.dumps({"method": method, "params": params, "id": 1}).encode()
        # The URL is always https://, built above from the host and port.
        req = urllib.request.Request(self._url, data=body, headers=self._headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=60) as resp:  # noqa: S310
                envelope: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise click.ClickException("wrong user name or password") from None
            raise click.ClickException(f"the API answered HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise click.ClickException(f"cannot reach the API at {self._url}: {e}") from None
        if "error" in envelope:
            err = envelope["error"]
            raise click.ClickException(f"{err.get('name')}: {err.get('message')}")
        result: dict[str, Any] = envelope["result"]
        return result
