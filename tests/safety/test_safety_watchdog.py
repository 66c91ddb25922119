"""Automatic trips: the pure decision table, then the loop against the stand-in engine and TradingSystem."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quantzoo_api.types import parse_spec
from quantzoo_safety.watchdog import (
    Sample,
    TripLimits,
    WatchdogMemory,
    decide,
    parse_time,
    resolve_limits,
)
from safety_support import closed_port

T0 = 1_800_000_000.0
LIMITS = TripLimits(
    heartbeat_timeout_seconds=15,
    max_rejects_per_minute=50,
    max_errors_per_minute=20,
    max_daily_drawdown_pct=3.0,
    stale_data_seconds=10,
)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def state(now: float, **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "trading_state": "ACTIVE",
        "kill_switch": {"engaged": False},
        "last_update": iso(now - 1),
        "heartbeat_at": iso(now - 0.5),
        "pnl": {"unrealized_pnl_pct": 0.1, "daily_drawdown_pct": 0.4},
        "orders": {"submitted": 10, "filled": 9, "rejected": 3, "rejected_by_reason": {}, "working": 1},
        "data": {"stale": False, "staleness_seconds": 1.0, "missing_bars": 0, "outliers": 0},
        "errors_total": 2,
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(s.get(key), dict):
            s[key] = {**s[key], **value}
        else:
            s[key] = value
    return s


AFTER_GRACE = T0 + 100
OLD = WatchdogMemory(started_at=T0, last_contact_at=AFTER_GRACE - 2)


def with_history(rejected: int, errors: int, ago: float = 30) -> WatchdogMemory:
    return WatchdogMemory(
        started_at=T0,
        last_contact_at=AFTER_GRACE - 2,
        samples=(Sample(AFTER_GRACE - ago, rejected, errors),),
    )


N = AFTER_GRACE
CASES = [
    # (id, now, state or None, memory, engaged, expected code or None, expected words)
    ("healthy", N, state(N), OLD, False, None, None),
    (
        "heartbeat old",
        N,
        state(N, heartbeat_at=iso(N - 20)),
        OLD,
        False,
        "heartbeat",
        "20.0s ago >= timeout 15s",
    ),
    ("heartbeat just inside", N, state(N, heartbeat_at=iso(N - 14.9)), OLD, False, None, None),
    ("heartbeat missing", N, state(N, heartbeat_at=None), OLD, False, "heartbeat", "no usable heartbeat_at"),
    ("heartbeat naive time", N, state(N, heartbeat_at="2026-01-01T00:00:00"), OLD, False, "heartbeat", None),
    (
        "unreachable past timeout",
        N,
        None,
        WatchdogMemory(started_at=T0, last_contact_at=N - 16),
        False,
        "heartbeat",
        "unreachable for 16.0s",
    ),
    ("unreachable briefly", N, None, WatchdogMemory(started_at=T0, last_contact_at=N - 3), False, None, None),
    ("never reached, in grace", T0 + 5, None, WatchdogMemory(started_at=T0), False, None, None),
    ("never reached, after grace", T0 + 15, None, WatchdogMemory(started_at=T0), False, "heartbeat", None),
    (
        "stale heartbeat in grace",
        T0 + 5,
        state(T0 + 5, heartbeat_at=iso(T0 - 60)),
        WatchdogMemory(T0),
        False,
        None,
        None,
    ),
    (
        "drawdown at limit",
        N,
        state(N, pnl={"daily_drawdown_pct": 3.0}),
        OLD,
        False,
        "drawdown",
        "3.0% >= limit 3.0%",
    ),
    (
        "drawdown over",
        N,
        state(N, pnl={"daily_drawdown_pct": 3.4}),
        OLD,
        False,
        "drawdown",
        "daily drawdown 3.4%",
    ),
    ("drawdown negative sign", N, state(N, pnl={"daily_drawdown_pct": -4.0}), OLD, False, "drawdown", None),
    ("drawdown under", N, state(N, pnl={"daily_drawdown_pct": 2.9}), OLD, False, None, None),
    (
        "drawdown in grace still trips",
        T0 + 1,
        state(T0 + 1, pnl={"daily_drawdown_pct": 9}),
        WatchdogMemory(T0),
        False,
        "drawdown",
        None,
    ),
    (
        "stale by seconds",
        N,
        state(N, data={"staleness_seconds": 12.0}),
        OLD,
        False,
        "stale_data",
        "12.0s old >= limit 10s",
    ),
    (
        "stale flag",
        N,
        state(N, data={"stale": True, "staleness_seconds": 4.0}),
        OLD,
        False,
        "stale_data",
        "stale market data",
    ),
    ("stale in grace", T0 + 5, state(T0 + 5, data={"stale": True}), WatchdogMemory(T0), False, None, None),
    (
        "reject spike",
        N,
        state(N, orders={"rejected": 64}),
        with_history(10, 2),
        False,
        "reject_spike",
        "54 orders rejected",
    ),
    ("rejects at limit", N, state(N, orders={"rejected": 60}), with_history(10, 2), False, None, None),
    (
        "rejects outside window",
        N,
        state(N, orders={"rejected": 500}),
        with_history(10, 2, ago=61),
        False,
        None,
        None,
    ),
    (
        "error burst",
        N,
        state(N, errors_total=30),
        with_history(3, 2),
        False,
        "error_burst",
        "28 engine errors",
    ),
    (
        "engine restarted: counters reset",
        N,
        state(N, orders={"rejected": 0}, errors_total=0),
        with_history(90, 90),
        False,
        None,
        None,
    ),
    ("engaged: no re-trip", N, state(N, pnl={"daily_drawdown_pct": 50}), OLD, True, None, None),
    ("engaged: unreachable no trip", N, None, WatchdogMemory(T0, N - 100), True, None, None),
    (
        "priority heartbeat over drawdown",
        N,
        state(N, heartbeat_at=iso(N - 99), pnl={"daily_drawdown_pct": 9}),
        OLD,
        False,
        "heartbeat",
        None,
    ),
]


@pytest.mark.parametrize(
    ("now", "engine_state", "memory", "engaged", "code", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(now, engine_state, memory, engaged, code, words):
    decision = decide(now=now, state=engine_state, engaged=engaged, memory=memory, limits=LIMITS)
    if code is None:
        assert decision.trip is None, decision.trip
        return
    assert decision.trip is not None
    assert decision.trip.code == code
    assert decision.trip.reason.startswith(f"auto:{code}: ")
    if words:
        assert words in decision.trip.reason


def test_every_reason_is_covered_by_the_table():
    codes = {c[5] for c in CASES if c[5]}
    assert codes == {"heartbeat", "drawdown", "stale_data", "reject_spike", "error_burst"}


def test_disabled_never_trips():
    off = TripLimits(enabled=False)
    d = decide(now=N, state=None, engaged=False, memory=WatchdogMemory(T0), limits=off)
    assert d.trip is None


def test_reject_window_restarts_after_a_release():
    memory = WatchdogMemory(started_at=T0)
    # Engaged while 200 rejects pile up; released afterwards: the old rejects do not trip.
    for i, rejected in enumerate([0, 100, 200]):
        memory = decide(
            now=N + i,
            state=state(N + i, orders={"rejected": rejected}),
            engaged=True,
            memory=memory,
            limits=LIMITS,
        ).memory
    d = decide(
        now=N + 3, state=state(N + 3, orders={"rejected": 200}), engaged=False, memory=memory, limits=LIMITS
    )
    assert d.trip is None
    d = decide(
        now=N + 4, state=state(N + 4, orders={"rejected": 260}), engaged=False, memory=d.memory, limits=LIMITS
    )
    assert d.trip is not None
    assert d.trip.code == "reject_spike"


def test_memory_tracks_contact_and_trims_the_window():
    memory = WatchdogMemory(started_at=T0)
    for i in range(0, 120, 10):
        memory = decide(now=T0 + i, state=state(T0 + i), engaged=False, memory=memory, limits=LIMITS).memory
    assert memory.last_contact_at == T0 + 110
    assert all(s.at >= T0 + 50 for s in memory.samples)


def test_parse_time():
    assert parse_time("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_time("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_time(12.5) == 12.5
    assert parse_time("garbage") is None
    assert parse_time(None) is None
    assert parse_time(True) is None


def test_resolve_limits_from_spec_and_overrides():
    spec = parse_spec(
        {
            "risk": {"maxDailyDrawdownPct": 3.0, "staleDataSeconds": 30},
            "safety": {"autoTrip": {"heartbeatTimeoutSeconds": 9, "maxRejectsPerMinute": 7}},
        }
    )
    limits = resolve_limits(spec)
    assert limits.max_daily_drawdown_pct == 3.0
    assert limits.stale_data_seconds == 30
    assert limits.heartbeat_timeout_seconds == 9
    assert limits.max_rejects_per_minute == 7
    assert limits.max_errors_per_minute == 20  # AutoTripSpec default
    assert limits.grace == 9
    assert resolve_limits(spec, {"max_daily_drawdown_pct": 1.5}).max_daily_drawdown_pct == 1.5
    defaults = resolve_limits(parse_spec({}))
    assert defaults.max_daily_drawdown_pct == 5.0  # RiskLimits default
    assert defaults.heartbeat_timeout_seconds == 15.0


# ------------------------------------------------------------------------------ the loop, with I/O
def test_watchdog_trips_drawdown_once_through_the_activate_path(client, engine, fake_kube):
    engine.engine.daily_drawdown_pct = 6.5
    wd = client.ctx.watchdog
    trip = client.portal.call(wd.check_once)
    assert trip is not None
    assert trip.code == "drawdown"
    ks = fake_kube.obj["spec"]["killSwitch"]
    assert ks["engaged"] is True
    assert ks["operator"] == "safety-watchdog"
    assert ks["source"] == "auto"
    assert ks["reason"] == "auto:drawdown: daily drawdown 6.5% >= limit 5.0%"
    assert ks["closePositions"] is False
    assert engine.engine.trading_state == "HALTED"
    assert client.portal.call(wd.check_once) is None  # engaged: no re-trip
    assert len(fake_kube.patches) == 1
    metrics = client.ctx.metrics
    assert metrics.auto_trips.labels(reason="drawdown")._value.get() == 1
    assert metrics.activations.labels(source="auto")._value.get() == 1
    entry = client.ctx.audit.recent(1)[0]
    assert entry["action"] == "kill-switch.auto-trip"
    assert entry["operator"] == "safety-watchdog"
    assert entry["result"] == "engaged"
    assert entry["reason"].startswith("auto:drawdown:")


def test_watchdog_reads_limits_from_the_live_tradingsystem(client, engine, fake_kube):
    fake_kube.obj["spec"]["risk"] = {"maxDailyDrawdownPct": 1.0}
    engine.engine.daily_drawdown_pct = 1.2
    trip = client.portal.call(client.ctx.watchdog.check_once)
    assert trip is not None
    assert "limit 1.0%" in trip.reason


def test_env_override_beats_the_live_spec(make_client, engine, fake_kube):
    fake_kube.obj["spec"]["risk"] = {"maxDailyDrawdownPct": 1.0}
    engine.engine.daily_drawdown_pct = 1.2
    with make_client(fake_kube, limit_overrides={"max_daily_drawdown_pct": 2.0}) as c:
        assert c.portal.call(c.ctx.watchdog.check_once) is None


def test_watchdog_heartbeat_trip_when_engine_is_gone(make_client, fake_kube):
    with make_client(
        fake_kube,
        engine_url=f"http://127.0.0.1:{closed_port()}",
        limit_overrides={"heartbeat_timeout_seconds": 1, "startup_grace_seconds": 0},
    ) as c:
        wd = c.ctx.watchdog
        wd.memory = WatchdogMemory(started_at=time.time() - 5)
        trip = c.portal.call(wd.check_once)
        assert trip is not None
        assert trip.code == "heartbeat"
        ks = fake_kube.obj["spec"]["killSwitch"]
        assert ks["reason"].startswith("auto:heartbeat: engine unreachable")
        assert c.ctx.audit.recent(1)[0]["engine"] == "unreachable"


def test_watchdog_failure_is_audited_and_retried(make_client, fake_kube):
    fake_kube.unreachable = True
    with make_client(
        fake_kube,
        engine_url=f"http://127.0.0.1:{closed_port()}",
        limit_overrides={"heartbeat_timeout_seconds": 1, "startup_grace_seconds": 0},
    ) as c:
        wd = c.ctx.watchdog
        wd.memory = WatchdogMemory(started_at=time.time() - 5)
        assert c.portal.call(wd.check_once) is not None
        assert c.ctx.audit.recent(1)[0]["result"] == "failed"
        fake_kube.unreachable = False
        assert c.portal.call(wd.check_once) is not None  # not engaged yet, so it tries again
        assert fake_kube.obj["spec"]["killSwitch"]["engaged"] is True


def test_watchdog_loop_runs_in_the_lifespan(make_client, engine, fake_kube):
    engine.engine.rejected = 0
    with make_client(fake_kube, start_watchdog=True, limit_overrides={"check_interval_seconds": 0.05}) as c:
        assert c.ctx.watchdog.running
        time.sleep(0.15)
        engine.engine.rejected = 500
        deadline = time.monotonic() + 3
        while not fake_kube.obj["spec"]["killSwitch"].get("engaged") and time.monotonic() < deadline:
            time.sleep(0.02)
        ks = fake_kube.obj["spec"]["killSwitch"]
        assert ks["reason"].startswith("auto:reject_spike: 500 orders rejected")
        check = c.get("/test/safety-check", headers=c.auth()).json()
        assert next(x for x in check["checks"] if x["name"] == "watchdog_running")["ok"] is True
    assert not c.ctx.watchdog.running


numbers = st.one_of(
    st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10, 10**6), st.text(max_size=3)
)
engine_states = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "heartbeat_at": st.one_of(numbers, st.just(iso(N)), st.just(iso(N - 100))),
            "pnl": st.fixed_dictionaries({}, optional={"daily_drawdown_pct": numbers}),
            "orders": st.fixed_dictionaries({}, optional={"rejected": numbers}),
            "data": st.fixed_dictionaries(
                {}, optional={"stale": st.booleans(), "staleness_seconds": numbers}
            ),
            "errors_total": numbers,
        },
    ),
)


@settings(max_examples=100, deadline=None)
@given(engine_states, st.floats(0, 1000), st.booleans())
def test_decide_never_trips_while_engaged_and_never_raises(engine_state, offset, enabled):
    limits = TripLimits(enabled=enabled)
    memory = WatchdogMemory(started_at=T0, samples=(Sample(N - 10, 5, 5),))
    engaged = decide(now=N + offset, state=engine_state, engaged=True, memory=memory, limits=limits)
    assert engaged.trip is None
    free = decide(now=N + offset, state=engine_state, engaged=False, memory=memory, limits=limits)
    if free.trip is not None:
        assert enabled
        assert free.trip.reason.startswith(f"auto:{free.trip.code}: ")
        assert free.trip.code in {"heartbeat", "drawdown", "stale_data", "reject_spike", "error_burst"}
