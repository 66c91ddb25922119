"""The operator's own HTTP endpoint (default :8080): `/healthz` for the liveness probe and `/metrics`.

/healthz answers 200 while the kill-switch propagator's loop and watch threads are alive (they are
the operator's most important work; kopf's own tasks end the process when they fail), else 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self, host: str, port: int, probe: Callable[[], dict[str, Any]], exposition: Callable[[], bytes]
    ) -> None:
        self.host, self.port = host, port
        self.probe = probe
        self.exposition = exposition
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _: web.Request) -> web.Response:
        report = self.probe()
        return web.json_response(report, status=200 if report.get("alive") else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/healthz", self._healthz), web.get("/metrics", self._metrics)])
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("serving /healthz and /metrics on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
