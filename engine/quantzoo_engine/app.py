"""Wiring: settings -> broker, feed, engine, runtime -> a FastAPI app with a lifespan.

`create_app(settings)` is what `python -m quantzoo_engine` serves. Tests pass their own broker, feed or
clock; every app instance has its own engine and its own metrics registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from quantzoo_api.sessions import UnknownCalendar, sessions_for
from quantzoo_api.types import BrokerKind, MarketDataKind, TradingMode
from quantzoo_api.watching import WatchTimeouts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quantzoo_engine.account import AccountBinding, AccountConfigError
from quantzoo_engine.api import admin, public
from quantzoo_engine.broker.base import Broker
from quantzoo_engine.broker.dry_run import DryRunBroker
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import Clock, SystemClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.feed.base import MarketDataFeed
from quantzoo_engine.feed.replay import ReplayError, ReplayFeed
from quantzoo_engine.feed.simulated import SimulatedFeed
from quantzoo_engine.kube_watch import KubeWatch
from quantzoo_engine.lease import LeaseKeeper, TradingLease, holder_identity, lease_name
from quantzoo_engine.level_watch import LevelWatch
from quantzoo_engine.metrics import EngineMetrics
from quantzoo_engine.proof import Freshness
from quantzoo_engine.risk.account_limits import AccountGuard
from quantzoo_engine.runtime import EngineRuntime, LeaseFactory, LevelWatchFactory, WatchFactory
from quantzoo_engine.sdk import registry
from quantzoo_engine.settings import ConfigError, EngineSettings

log = logging.getLogger(__name__)


def build_broker(settings: EngineSettings, clock: Clock, account: AccountBinding | None = None) -> Broker:
    spec = settings.spec
    real: Broker | None = None
    if spec.broker.kind is BrokerKind.ALPACA:
        from quantzoo_engine.broker.alpaca import AlpacaBroker  # alpaca-py is imported only when used

        credentials = settings.alpaca_credentials()
        key, secret = credentials.current()
        real = AlpacaBroker(
            key,
            secret,
            paper=spec.mode is not TradingMode.LIVE,  # live only when the spec says so explicitly
            url_override=spec.broker.base_url,
            timeout_seconds=settings.broker_timeout_seconds,
            credentials=credentials.current,  # a rotated Secret rebuilds the clients, no restart
            # In a shared account: only what this system owns (broker/ownership.py).
            owner_prefix=account.order_prefix if account else None,
            capital=spec.broker.initial_cash,
            state_dir=settings.state_dir,
        )
    if spec.mode is TradingMode.DRY_RUN:
        return DryRunBroker(spec.broker.initial_cash, clock, seed_from=real)
    if real is not None:
        return real
    return PaperBroker(spec.broker.initial_cash, clock)


def build_feed(settings: EngineSettings) -> MarketDataFeed:
    md, symbols = settings.spec.market_data, list(settings.spec.symbols)
    if md.kind is MarketDataKind.REPLAY:
        try:
            return ReplayFeed.from_csv(md.replay_path or "", symbols, md.interval_seconds)
        except (OSError, ReplayError) as exc:
            raise ConfigError(f"marketData.replayPath: {exc}") from exc
    if md.kind is MarketDataKind.ALPACA:
        from quantzoo_engine.feed.alpaca import AlpacaFeed

        credentials = settings.alpaca_credentials()
        key, secret = credentials.current()
        return AlpacaFeed(symbols, key, secret, url_override=md.base_url, credentials=credentials.current)
    # The simulated market keeps the calendar's hours: no bars while it is closed.
    sessions = sessions_for(settings.spec.calendar)
    return SimulatedFeed(symbols, seed=md.seed, interval_seconds=md.interval_seconds, sessions=sessions)


class LatencyMiddleware:
    """api_latency_seconds{api="http"}: how long the most recent request took (plain ASGI, cheap)."""

    def __init__(self, app: ASGIApp, metrics: EngineMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe_latency("http", time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)


def create_app(
    settings: EngineSettings | None = None,
    *,
    broker: Broker | None = None,
    feed: MarketDataFeed | None = None,
    clock: Clock | None = None,
    with_feed: bool = True,
    watch_factory: WatchFactory | None = None,
) -> FastAPI:
    settings = settings or EngineSettings()
    clock = clock or SystemClock()
    metrics = EngineMetrics()
    spec = settings.spec
    try:
        # An unknown strategy or a bad parameter: refuse to start (the message names the field).
        registry.validate_params(spec.strategy.name, dict(spec.strategy.params))
        sessions_for(spec.calendar)
    except registry.StrategyConfigError as exc:
        raise ConfigError(str(exc)) from None
    except UnknownCalendar as exc:
        raise ConfigError(f"session.calendar: {exc}") from None
    try:
        account = AccountBinding.from_env(settings.namespace, settings.name, spec)
    except AccountConfigError as exc:
        raise ConfigError(str(exc)) from None
    if feed is None and with_feed:
        feed = build_feed(settings)
    broker = broker or build_broker(settings, clock, account)
    account_guard = None
    if account is not None and hasattr(broker, "account_exposure"):  # a dry run sends nothing to limit
        account_guard = AccountGuard(
            account.name,
            account.limits,
            broker.account_exposure,
            clock.monotonic,
            max_age_seconds=account.cache_seconds,
        )
    engine = TradingEngine(
        spec=spec,
        broker=broker,
        metrics=metrics,
        clock=clock,
        pod=settings.pod_name,
        namespace=settings.namespace,
        name=settings.name,
        kill_deadline_seconds=settings.kill_deadline_seconds,
        outlier_pct=settings.outlier_pct,
        bar_interval_seconds=feed.bar_interval_seconds if feed is not None else None,
        reconcile_interval_seconds=settings.reconcile_interval_seconds,
        isolate_strategy=settings.isolate_strategy,
        order_prefix=account.order_prefix if account else None,
        account_guard=account_guard,
    )
    lease_factory: LeaseFactory | None = None
    level_watch_factory: LevelWatchFactory | None = None
    if watch_factory is None and settings.watch_kubernetes:
        timeouts = WatchTimeouts(
            server_seconds=settings.watch_timeout_seconds,
            connect_seconds=settings.kube_request_timeout_seconds,
            read_seconds=settings.kube_request_timeout_seconds,
        )

        def watch_factory(on_action: Any) -> KubeWatch:
            return KubeWatch(
                settings.namespace,
                settings.name,
                on_action,
                kubeconfig=settings.kubeconfig,
                timeouts=timeouts,
            )

        def level_watch_factory(watch: KubeWatch, on_action: Any) -> list[LevelWatch]:
            """Every other level covering the system: the TradingHalts, and its TradingAccount."""
            if not settings.watch_levels:
                return []
            api_client, ns = watch.api_client(), settings.namespace
            watches = [LevelWatch.halts(ns, api_client, on_action, timeouts=timeouts)]
            if spec.account_ref is not None:
                watches.append(
                    LevelWatch.account(ns, spec.account_ref.name, api_client, on_action, timeouts=timeouts)
                )
            return watches

        def lease_factory(watch: KubeWatch, validity: Freshness, on_change: Any) -> LeaseKeeper:
            lease = TradingLease(
                watch.api_client(),
                settings.namespace,
                lease_name(settings.name),
                holder_identity(settings.pod_name),
                duration_seconds=settings.lease_duration_seconds,
                request_timeout_seconds=settings.kube_request_timeout_seconds,
            )
            return LeaseKeeper(
                lease,
                validity,
                on_change,
                renew_seconds=settings.lease_renew_seconds,
                margin_seconds=settings.lease_margin_seconds,
            )

    admin_token = settings.admin_token_source()  # re-read on every request: rotation needs no restart
    runtime = EngineRuntime(
        engine,
        feed,
        state_dir=settings.state_dir,
        shutdown_deadline_seconds=settings.shutdown_deadline_seconds,
        config_generation=settings.generation,
        watch_factory=watch_factory,
        proof_timeout_seconds=settings.proof_timeout_seconds,
        lease_factory=lease_factory,
        level_watch_factory=level_watch_factory,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "engine starting",
            extra={
                "mode": str(spec.mode),
                "broker": engine.broker.name,
                "symbols": list(spec.symbols),
                "watch_kubernetes": settings.watch_kubernetes,
                "admin_api": bool(admin_token.current()),
            },
        )
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="QuantZoo engine", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.admin_token = admin_token
    app.include_router(public.router)
    app.include_router(admin.router)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    return app
