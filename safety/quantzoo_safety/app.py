"""Wiring: builds the parts from Settings, starts the watchdog in the lifespan, mounts the routers.

`create_app(settings)` is what `python -m quantzoo_safety` serves. Tests pass their own `kube`
(a TradingSystemClient, e.g. pointed at a real or a closed API server) and `http` client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV
from quantzoo_api.secret_file import SecretFile

from quantzoo_safety.api import probes, runbook
from quantzoo_safety.audit import AuditLog
from quantzoo_safety.auth import TokenSource
from quantzoo_safety.context import SafetyContext
from quantzoo_safety.errors import validation_error_handler
from quantzoo_safety.killswitch import KillSwitchService
from quantzoo_safety.kube import ApiServerUnreachable, TradingSystemClient, api_client_from_environment
from quantzoo_safety.levels_api import levels
from quantzoo_safety.metrics import SafetyMetrics
from quantzoo_safety.middleware import RequestRecorder
from quantzoo_safety.observe import Observer
from quantzoo_safety.pending_store import PendingStore
from quantzoo_safety.settings import Settings
from quantzoo_safety.watchdog import Watchdog

log = logging.getLogger(__name__)


def kube_client_for(settings: Settings) -> TradingSystemClient | None:
    """The TradingSystem client from KUBECONFIG or in-cluster config; None in standalone mode.

    Without a usable configuration the client still exists and answers "unreachable", so the engine
    path keeps working and /test/safety-check says what is wrong.
    """
    if not settings.kubernetes_enabled:
        return None
    try:
        api_client = api_client_from_environment(settings.kubeconfig)
        error = None
    except ApiServerUnreachable as exc:
        api_client, error = None, str(exc)
        log.error("Kubernetes API not usable, only the direct engine path works: %s", exc)
    return TradingSystemClient(
        api_client,
        settings.namespace,
        settings.name,
        timeout=settings.kube_timeout_seconds,
        config_error=error,
    )


def build_context(
    settings: Settings,
    *,
    http: httpx.AsyncClient,
    kube: TradingSystemClient | None,
) -> SafetyContext:
    tokens = TokenSource(settings.api_token, settings.api_token_file, settings.token_overlap_seconds)
    engine_token = SecretFile(
        settings.engine_admin_token_file,
        settings.engine_admin_token,
        label=ENGINE_ADMIN_TOKEN_ENV,
        overlap_seconds=settings.token_overlap_seconds,
    )
    metrics = SafetyMetrics()
    audit = AuditLog(
        settings.audit_log_path,
        tradingsystem=settings.tradingsystem,
        secrets_provider=lambda: [*tokens.all_known(), *engine_token.known()],
        keep=settings.audit_memory_entries,
    )
    observer = Observer(
        engine_url=settings.engine_url,
        http=http,
        kube=kube,
        metrics=metrics,
        engine_timeout=settings.engine_timeout_seconds,
    )
    killswitch = KillSwitchService(
        engine_url=settings.engine_url,
        engine_admin_token=engine_token,
        http=http,
        kube=kube,
        observer=observer,
        metrics=metrics,
        audit=audit,
        kube_deadline=settings.kube_timeout_seconds,
        engine_timeout=settings.engine_timeout_seconds,
        pending_store=PendingStore(settings.pending_file),
    )
    watchdog = Watchdog(
        spec=settings.spec,
        overrides=settings.limit_overrides,
        observer=observer,
        killswitch=killswitch,
        audit=audit,
        metrics=metrics,
    )
    return SafetyContext(settings, tokens, metrics, audit, observer, killswitch, watchdog)


_UNSET = object()


def create_app(
    settings: Settings | None = None,
    *,
    kube: TradingSystemClient | object | None = _UNSET,
    http: httpx.AsyncClient | None = None,
    start_watchdog: bool = True,
) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_http = http is None
        client = http or httpx.AsyncClient(timeout=settings.engine_timeout_seconds)
        kube_client = kube_client_for(settings) if kube is _UNSET else kube
        ctx = build_context(settings, http=client, kube=kube_client)  # type: ignore[arg-type]
        app.state.safety = ctx
        if not ctx.tokens.current():
            log.error("no API token configured: every authenticated call will be refused with 503")
        log.info(
            "safety service for %s: engine %s, kubernetes %s",
            settings.tradingsystem,
            settings.engine_url,
            "enabled" if settings.kubernetes_enabled else "disabled (standalone)",
        )
        if ctx.killswitch.pending is not None:
            await ctx.killswitch.reassert_pending()
        background: list[asyncio.Task[None]] = []
        if start_watchdog:  # the background loops: the watchdog, and the engine pods' addresses kept known
            ctx.watchdog.start()
            background.append(asyncio.create_task(ctx.killswitch.keep_engine_targets_known()))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await ctx.watchdog.stop()
            if own_http:
                await client.aclose()
            if kube is _UNSET and kube_client is not None:
                kube_client.close()

    app = FastAPI(
        title="QuantZoo safety service",
        description="Kill switch, status and automatic trips for one TradingSystem.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(runbook)
    app.include_router(levels)  # GET /kill-switch/levels (levels_api.py)
    app.include_router(probes)
    app.add_middleware(RequestRecorder, context=lambda: app.state.safety)
    return app
