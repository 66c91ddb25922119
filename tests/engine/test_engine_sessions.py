"""A market that opens and closes: the XNYS calendar (exchange-calendars) through the engine, the risk
checks, the simulated feed, the backtester and the watchdog. Times are UTC; XNYS opens 14:30 in winter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from backtest_data import random_walk
from engine_helpers import Bars, make_spec, market, ready_engine
from quantzoo_api.sessions import sessions_for
from quantzoo_engine.backtest import run_backtest
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.feed.simulated import SimulatedFeed
from quantzoo_engine.orders import Side
from quantzoo_engine.risk.checks import RejectReason
from quantzoo_engine.sdk import registry
from quantzoo_safety.watchdog import WatchdogMemory, decide, resolve_limits

SATURDAY = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
MONDAY_OPEN = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
CHRISTMAS = datetime(2026, 12, 25, 15, 0, tzinfo=UTC)  # a Friday, a holiday
CROSSOVER = {"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 4, "orderQuantity": 7}}
ZIGZAG = [100, 101, 102, 103, 100, 98, 97, 99, 102, 104]


def test_the_xnys_calendar_knows_weekends_holidays_and_early_closes() -> None:
    xnys = sessions_for("XNYS")
    assert not xnys.is_open(SATURDAY)
    assert xnys.is_open(MONDAY_OPEN)
    assert not xnys.is_open(MONDAY_OPEN - timedelta(seconds=1))
    assert not xnys.is_open(CHRISTMAS)
    assert xnys.is_open(datetime(2026, 11, 27, 17, 59, tzinfo=UTC))  # day after Thanksgiving: closes 13:00 ET
    assert not xnys.is_open(datetime(2026, 11, 27, 18, 0, tzinfo=UTC))
    assert xnys.next_open(SATURDAY) == MONDAY_OPEN
    assert sessions_for("24/7").is_open(SATURDAY)


def test_the_default_stale_limit_fits_the_feeds_bar_interval() -> None:
    assert make_spec().stale_data_limit == 10.0  # simulated feed, one-second bars
    alpaca = make_spec(marketData={"kind": "alpaca"})
    assert (alpaca.stale_data_limit, alpaca.calendar) == (180.0, "XNYS")  # one-minute bars, NYSE hours
    assert make_spec(marketData={"intervalSeconds": 30}).stale_data_limit == 90.0
    assert make_spec(risk={"staleDataSeconds": 5}).stale_data_limit == 5.0
    assert make_spec().calendar == "24/7"


async def _crossover_engine(at: datetime):
    clock = ManualClock(at)
    spec = make_spec(strategy=CROSSOVER, session={"calendar": "XNYS"})
    bars = Bars(start=at)
    engine = await ready_engine(spec, clock=clock, strategy=registry.build(spec.strategy), bars=bars)
    return engine, clock, bars


async def _trade_zigzag(engine, clock: ManualClock, bars: Bars) -> None:
    for price in ZIGZAG:
        clock.advance(1)
        await engine.on_bar(bars("AAPL", price))


@pytest.mark.anyio
async def test_closed_market_no_trading_no_staleness_then_the_open_trades() -> None:
    engine, clock, bars = await _crossover_engine(SATURDAY)
    await _trade_zigzag(engine, clock, bars)
    assert engine.counts.submitted == 0
    refused = await engine.submit(market("AAPL", Side.BUY, 1))
    assert refused.rejection is not None
    assert refused.rejection.reason is RejectReason.MARKET_CLOSED
    # A whole weekend without a bar is not stale data.
    clock.advance_to(MONDAY_OPEN - timedelta(minutes=1))
    view = engine.state_view()
    assert (view["data"]["stale"], view["data"]["staleness_seconds"]) == (False, 0.0)
    assert view["market"]["open"] is False
    assert view["market"]["next_open"] == MONDAY_OPEN
    # The bell: staleness counts from the open, not from Friday's last bar.
    clock.advance_to(MONDAY_OPEN + timedelta(seconds=3))
    assert engine.state_view()["data"]["staleness_seconds"] == pytest.approx(3.0)
    await _trade_zigzag(engine, clock, bars)
    assert engine.counts.submitted >= 1
    assert engine.portfolio.quantity("AAPL") != 0


@pytest.mark.anyio
async def test_a_holiday_is_honoured() -> None:
    engine, clock, bars = await _crossover_engine(CHRISTMAS)
    await _trade_zigzag(engine, clock, bars)
    assert engine.counts.submitted == 0
    assert engine.counts.rejected_by_reason == {}  # the strategy was not even asked
    clock.advance(3600)
    assert engine.state_view()["data"]["stale"] is False


@pytest.mark.anyio
async def test_allow_outside_session_trades_on_a_saturday() -> None:
    clock = ManualClock(SATURDAY)
    spec = make_spec(strategy=CROSSOVER, session={"calendar": "XNYS", "allowOutsideSession": True})
    bars = Bars(start=SATURDAY)
    engine = await ready_engine(spec, clock=clock, strategy=registry.build(spec.strategy), bars=bars)
    await _trade_zigzag(engine, clock, bars)
    assert engine.counts.submitted >= 1
    clock.advance(60)  # and its data goes stale on a Saturday, since it trades on one
    assert engine.state_view()["data"]["stale"] is True
    assert resolve_limits(spec).calendar == "24/7"


def test_the_watchdog_does_not_trip_on_stale_data_while_the_market_is_closed() -> None:
    limits = resolve_limits(make_spec(session={"calendar": "XNYS"}, risk={"staleDataSeconds": 10}))
    now = SATURDAY.timestamp()
    memory = WatchdogMemory(started_at=now - 1_000, last_contact_at=now - 2)
    beat = SATURDAY.isoformat()
    old_data = {"heartbeat_at": beat, "data": {"stale": True, "staleness_seconds": 50_000.0}}
    assert decide(now=now, state=old_data, engaged=False, memory=memory, limits=limits).trip is None
    # The same report during a session trips.
    now = (MONDAY_OPEN + timedelta(hours=1)).timestamp()
    memory = WatchdogMemory(started_at=now - 1_000, last_contact_at=now - 2)
    open_data = {**old_data, "heartbeat_at": datetime.fromtimestamp(now, UTC).isoformat()}
    trip = decide(now=now, state=open_data, engaged=False, memory=memory, limits=limits).trip
    assert trip is not None
    assert trip.code == "stale_data"


def test_the_simulated_feed_is_quiet_while_the_market_is_closed() -> None:
    feed = SimulatedFeed(["AAPL"], interval_seconds=60, start=SATURDAY, sessions=sessions_for("XNYS"))
    assert all(not feed.next_bars() for _ in range(60 * 24))  # all of Saturday
    week = [feed.next_bars() for _ in range(60 * 24 * 3)]
    times = [b.timestamp for step in week for b in step]
    assert times
    assert all(sessions_for("XNYS").is_open(t) for t in times)


def test_the_backtester_follows_the_calendar() -> None:
    bars = random_walk(60 * 24 * 7, step=timedelta(minutes=1))  # a full week of round-the-clock bars
    spec = make_spec(symbols=["AAPL"], strategy=CROSSOVER, session={"calendar": "XNYS"})
    result = run_backtest(spec, bars)
    xnys = sessions_for("XNYS")
    assert result.fills
    assert all(xnys.is_open(f.at) for f in result.fills)
    assert result.rejected_by_reason.get("market_closed", 0) == 0  # never asked outside a session
