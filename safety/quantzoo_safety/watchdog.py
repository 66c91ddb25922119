"""Automatic trips: the safety service watches the engine and engages the kill switch on a breach.

`decide()` is the whole rule book, a pure function of (now, the engine's /state or None, whether the
switch is engaged, what was seen before, the limits): tested without I/O. `Watchdog` is the loop that
feeds it every `checkIntervalSeconds` and engages through the same path as the API's activate, with
operator `safety-watchdog`, source `auto` and a reason `auto:<code>: <explanation>`.

Reasons, in the order they are checked (the first breach wins):
- `auto:heartbeat`    engine unreachable, or its `heartbeat_at` older than the timeout (after a grace
                      period from the watchdog's start, so a rollout does not trip it);
- `auto:drawdown`     `pnl.daily_drawdown_pct` >= the limit (`spec.risk.maxDailyDrawdownPct`);
- `auto:stale_data`   the engine flags its data stale, or `data.staleness_seconds` >= the limit
                      (`spec.risk.staleDataSeconds`, by default three bar intervals; after the grace
                      period, and only while the TradingSystem's calendar has the market open);
- `auto:reject_spike` more than `maxRejectsPerMinute` new `orders.rejected` in the last 60 s;
- `auto:error_burst`  more than `maxErrorsPerMinute` new `errors_total` in the last 60 s.
No trip while the switch is engaged; the per-minute windows restart after a release.
Automatic trips never flatten positions (`close_positions` false): that stays a human decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from quantzoo_api.sessions import ALWAYS_OPEN, sessions_for
from quantzoo_api.types import TradingSystemSpec, parse_spec

from quantzoo_safety.audit import AuditLog
from quantzoo_safety.engagement import EngageIntent
from quantzoo_safety.killswitch import AUTO_SOURCE, KillSwitchError, KillSwitchService, outcome_fields
from quantzoo_safety.metrics import SafetyMetrics
from quantzoo_safety.observe import Observer

log = logging.getLogger(__name__)

WATCHDOG_OPERATOR = "safety-watchdog"
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class TripLimits:
    enabled: bool = True
    heartbeat_timeout_seconds: float = 15.0
    check_interval_seconds: float = 2.0
    max_rejects_per_minute: int = 50
    max_errors_per_minute: int = 20
    max_daily_drawdown_pct: float = 5.0
    stale_data_seconds: float = 10.0
    calendar: str = ALWAYS_OPEN  # no stale-data trip while this calendar's market is closed
    startup_grace_seconds: float | None = None  # None: the heartbeat timeout

    @property
    def grace(self) -> float:
        return (
            self.heartbeat_timeout_seconds
            if self.startup_grace_seconds is None
            else self.startup_grace_seconds
        )


def resolve_limits(spec: TradingSystemSpec, overrides: Mapping[str, Any] | None = None) -> TripLimits:
    """Limits from a TradingSystem spec, with explicit overrides (SAFETY_* env vars) on top."""
    auto = spec.safety.auto_trip
    limits = TripLimits(
        enabled=auto.enabled,
        heartbeat_timeout_seconds=auto.heartbeat_timeout_seconds,
        check_interval_seconds=auto.check_interval_seconds,
        max_rejects_per_minute=auto.max_rejects_per_minute,
        max_errors_per_minute=auto.max_errors_per_minute,
        max_daily_drawdown_pct=spec.risk.max_daily_drawdown_pct,
        stale_data_seconds=spec.stale_data_limit,
        # Trading outside the sessions too: data is due around the clock.
        calendar=ALWAYS_OPEN if spec.session.allow_outside_session else spec.calendar,
    )
    return replace(limits, **dict(overrides or {}))


@dataclass(frozen=True)
class Sample:
    at: float
    rejected: int | None
    errors: int | None


@dataclass(frozen=True)
class WatchdogMemory:
    started_at: float
    last_contact_at: float | None = None
    samples: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class Trip:
    code: str
    explanation: str

    @property
    def reason(self) -> str:
        return f"auto:{self.code}: {self.explanation}"


@dataclass(frozen=True)
class Decision:
    trip: Trip | None
    memory: WatchdogMemory
    notes: tuple[str, ...] = field(default=())


def parse_time(value: Any) -> float | None:
    """Unix seconds from an ISO-8601 string (with Z or offset) or a number; None when unusable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None  # a wall time without zone is ambiguous: treat as missing, not as fresh
        return dt.timestamp()
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _counter(value: Any) -> int | None:
    n = _number(value)
    return int(n) if n is not None and n >= 0 else None


def _window_delta(samples: tuple[Sample, ...], attr: str) -> int:
    values = [(s.at, getattr(s, attr)) for s in samples if getattr(s, attr) is not None]
    if len(values) < 2:
        return 0
    return values[-1][1] - values[0][1]


def _remember(
    memory: WatchdogMemory, now: float, state: dict[str, Any] | None, engaged: bool
) -> WatchdogMemory:
    if state is None:
        return memory
    orders = state.get("orders") if isinstance(state.get("orders"), dict) else {}
    sample = Sample(now, _counter(orders.get("rejected")), _counter(state.get("errors_total")))
    samples = memory.samples
    if samples:
        last = samples[-1]
        restarted = any(
            new is not None and old is not None and new < old
            for new, old in ((sample.rejected, last.rejected), (sample.errors, last.errors))
        )
        if restarted:  # a counter went down: the engine restarted; start the window afresh
            samples = ()
    if engaged:
        samples = ()  # a window that spans an engaged period must not trip right after the release
    samples = tuple(s for s in (*samples, sample) if s.at >= now - RATE_WINDOW_SECONDS)
    return replace(memory, last_contact_at=now, samples=samples)


def decide(
    *,
    now: float,
    state: dict[str, Any] | None,
    engaged: bool,
    memory: WatchdogMemory,
    limits: TripLimits,
    error: str | None = None,
) -> Decision:
    """Whether to trip now. `state` is the engine's `GET /state` body, or None when it did not answer."""
    new_memory = _remember(memory, now, state, engaged)
    if engaged or not limits.enabled:
        return Decision(None, new_memory)
    in_grace = now - memory.started_at < limits.grace
    timeout = limits.heartbeat_timeout_seconds

    # 1. heartbeat
    if not in_grace:
        if state is None:
            since = memory.last_contact_at if memory.last_contact_at is not None else memory.started_at
            age = now - since
            if age >= timeout:
                why = f": {error}" if error else ""
                return Decision(
                    Trip("heartbeat", f"engine unreachable for {age:.1f}s >= timeout {timeout:g}s{why}"),
                    new_memory,
                )
        else:
            beat = parse_time(state.get("heartbeat_at"))
            if beat is None:
                return Decision(Trip("heartbeat", "engine reports no usable heartbeat_at"), new_memory)
            age = now - beat
            if age >= timeout:
                return Decision(
                    Trip("heartbeat", f"last engine heartbeat {age:.1f}s ago >= timeout {timeout:g}s"),
                    new_memory,
                )
    if state is None:
        return Decision(None, new_memory)

    # 2. drawdown
    pnl = state.get("pnl") if isinstance(state.get("pnl"), dict) else {}
    drawdown = _number(pnl.get("daily_drawdown_pct"))
    if drawdown is not None and abs(drawdown) >= limits.max_daily_drawdown_pct:
        return Decision(
            Trip(
                "drawdown",
                f"daily drawdown {abs(drawdown):.1f}% >= limit {limits.max_daily_drawdown_pct:.1f}%",
            ),
            new_memory,
        )

    # 3. stale data
    data = state.get("data") if isinstance(state.get("data"), dict) else {}
    staleness = _number(data.get("staleness_seconds"))
    if not in_grace and sessions_for(limits.calendar).is_open(datetime.fromtimestamp(now, UTC)):
        if staleness is not None and staleness >= limits.stale_data_seconds:
            return Decision(
                Trip(
                    "stale_data",
                    f"market data {staleness:.1f}s old >= limit {limits.stale_data_seconds:g}s",
                ),
                new_memory,
            )
        if data.get("stale") is True:
            age = f" ({staleness:.1f}s old)" if staleness is not None else ""
            return Decision(Trip("stale_data", f"engine reports stale market data{age}"), new_memory)

    # 4. reject spike, 5. error burst
    span = now - new_memory.samples[0].at if new_memory.samples else 0.0
    rejects = _window_delta(new_memory.samples, "rejected")
    if rejects > limits.max_rejects_per_minute:
        return Decision(
            Trip(
                "reject_spike",
                f"{rejects} orders rejected in the last {span:.0f}s"
                f" > limit {limits.max_rejects_per_minute}/min",
            ),
            new_memory,
        )
    errors = _window_delta(new_memory.samples, "errors")
    if errors > limits.max_errors_per_minute:
        return Decision(
            Trip(
                "error_burst",
                f"{errors} engine errors in the last {span:.0f}s > limit {limits.max_errors_per_minute}/min",
            ),
            new_memory,
        )
    return Decision(None, new_memory)


class Watchdog:
    """The loop around `decide()`; also records a pending direct halt in the TradingSystem."""

    def __init__(
        self,
        *,
        spec: TradingSystemSpec,
        overrides: Mapping[str, Any],
        observer: Observer,
        killswitch: KillSwitchService,
        audit: AuditLog,
        metrics: SafetyMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.overrides = dict(overrides)
        self.limits = resolve_limits(spec, self.overrides)
        self.observer = observer
        self.killswitch = killswitch
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self.memory = WatchdogMemory(started_at=clock())
        self.last_check_at: float | None = None
        self.last_trip: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _engaged(self, engine_engaged: bool | None, cluster_engaged: bool | None) -> bool:
        return bool(
            engine_engaged
            or cluster_engaged
            or self.killswitch.pending is not None
            or (self.killswitch.standalone and self.killswitch.local.get("engaged"))
        )

    async def check_once(self) -> Trip | None:
        await self.killswitch.sync_pending()
        engine, cluster = await self.observer.both()
        if cluster.found:
            try:
                self.limits = resolve_limits(parse_spec(cluster.spec), self.overrides)
            except ValueError as exc:  # keep the previous limits; say why once per change
                if self.last_error != str(exc):
                    log.warning("TradingSystem spec not understood, keeping previous limits: %s", exc)
                self.last_error = str(exc)
        now = self.clock()
        decision = decide(
            now=now,
            state=engine.state if engine.reachable else None,
            engaged=self._engaged(engine.engaged, cluster.spec_engaged),
            memory=self.memory,
            limits=self.limits,
            error=engine.error,
        )
        self.memory = decision.memory
        self.last_check_at = now
        self.metrics.watchdog_last_check.set(now)
        if decision.trip is not None:
            await self.trip(decision.trip)
        return decision.trip

    async def trip(self, trip: Trip) -> None:
        intent = EngageIntent(reason=trip.reason[:1024], operator=WATCHDOG_OPERATOR, source=AUTO_SOURCE)
        log.warning("automatic trip: %s", trip.reason)
        try:
            answer = await self.killswitch.activate(intent)
        except KillSwitchError as exc:
            self.audit.record(
                "kill-switch.auto-trip",
                result="failed",
                operator=WATCHDOG_OPERATOR,
                source=AUTO_SOURCE,
                reason=trip.reason,
                detail=exc.detail,
                **exc.audit,
            )
            log.error("automatic trip could not engage the kill switch: %s", exc.detail)
            return
        self.metrics.auto_trips.labels(reason=trip.code).inc()
        self.last_trip = {
            "at": self.clock(),
            "code": trip.code,
            "reason": trip.reason,
            "status": answer["status"],
        }
        self.audit.record(
            "kill-switch.auto-trip",
            result=answer["status"],
            operator=WATCHDOG_OPERATOR,
            source=AUTO_SOURCE,
            reason=trip.reason,
            detail=answer["message"],
            **outcome_fields(answer),
        )

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any single bad check
                log.exception("watchdog check failed")
            await asyncio.sleep(self.limits.check_interval_seconds)

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self.run(), name="safety-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
