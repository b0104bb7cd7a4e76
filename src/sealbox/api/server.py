"""The Element JSON-RPC endpoint over HTTPS (aiohttp).

``POST /json-rpc/<version>`` (a trailing slash is accepted too) with HTTP Basic auth. Handlers
and password checks are blocking, so they run in a thread pool and the event loop only moves
bytes. Errors are HTTP 200 with an Element error object; only authentication (401) and unknown
paths or versions (404) use HTTP status codes, as the official clients expect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from sealbox.api import auth, dispatch
from sealbox.api.methods.system import is_supported
from sealbox.api.registry import load_all
from sealbox.cluster.admins import Principal
from sealbox.cluster.runtime import Cluster

log = logging.getLogger("sealbox.api")
MAX_BODY = 8 << 20


class _Denied(Exception):
    pass


class ApiServer:
    def __init__(
        self, cluster: Cluster, host: str, port: int, ssl_ctx: ssl.SSLContext | None,
        workers: int = 16,
    ) -> None:
        load_all()
        self._cluster = cluster
        self._host, self._port, self._ssl = host, port, ssl_ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api")
        self._runner: web.AppRunner | None = None
        self.bound_port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/json-rpc/{version}", self._rpc)
        app.router.add_post("/json-rpc/{version}/", self._rpc)
        app.router.add_route("*", "/{tail:.*}", _not_found)
        return app

    async def start(self, sock: socket.socket | None = None) -> int:
        """Serve on ``sock`` if given (already bound and listening: ``sealbox up`` binds before
        it creates anything), else bind ``host``:``port``; returns the port."""
        # auto_decompress off: aiohttp would inflate a Content-Encoding body itself and answer
        # a body that does not inflate with an HTTP 500 (gzip) or a 400 naming a missing
        # package (br, zstd). The handler refuses encoded bodies as an Element error instead.
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     auto_decompress=False)
        await self._runner.setup()
        site: web.BaseSite = (
            web.SockSite(self._runner, sock, ssl_context=self._ssl) if sock is not None
            else web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl))
        await site.start()
        server = site._server  # the bound port, when 0 was asked for
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        return self.bound_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        if not is_supported(request.match_info["version"]):
            return await _not_found(request)
        loop = asyncio.get_running_loop()
        header = request.headers.get("Authorization")
        try:
            principal = await loop.run_in_executor(self._pool, self._authenticate, header)
        except _Denied:
            return web.Response(
                status=401, text=auth.UNAUTHORIZED_BODY, content_type="text/html",
                headers={"WWW-Authenticate": 'Basic realm="sealbox"'},
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # Element clients send plain JSON; a compressed body is refused, not inflated (no
            # decompression bomb to bound, no codec to install).
            err = dispatch.RequestError(
                f"Content-Encoding {encoding[:40]!r} is not supported: send the JSON body "
                "uncompressed.")
            return _json({"id": None, "error": err.to_element()})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            err = dispatch.RequestError(f"The request body is larger than {MAX_BODY} bytes.")
            return _json({"id": None, "error": err.to_element()})
        envelope = await loop.run_in_executor(
            self._pool, dispatch.handle, self._cluster, principal, body
        )
        return _json(envelope)

    def _authenticate(self, header: str | None) -> Principal | None:
        """The caller, or None while no admin exists yet (bootstrap); raises _Denied."""
        creds = auth.parse_basic(header)
        if creds is not None:
            who = self._cluster.admins.authenticate(*creds)
            if who is not None:
                return who
        if not self._cluster.admins.any_exist():
            return None
        raise _Denied()


def _json(envelope: dict[str, Any]) -> web.Response:
    return web.Response(
        body=json.dumps(envelope, separators=(",", ":")).encode(),
        content_type="application/json",
    )


async def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text=auth.NOT_FOUND_BODY, content_type="text/html")
