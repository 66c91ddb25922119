"""Market data: the seeded simulated feed and its trouble hooks, the replay feed, the data guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from engine_helpers import Bars, make_spec, market, ready_engine
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.feed.base import Bar
from quantzoo_engine.feed.quality import BarVerdict, DataQualityGuard
from quantzoo_engine.feed.replay import ReplayError, ReplayFeed, infer_bar_interval, load_bars
from quantzoo_engine.feed.simulated import SimulatedFeed
from quantzoo_engine.orders import Side
from quantzoo_engine.risk.checks import RejectReason

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def run(feed: SimulatedFeed, ticks: int) -> list[Bar]:
    return [bar for _ in range(ticks) for bar in feed.next_bars()]


def test_simulated_feed_is_deterministic() -> None:
    a = run(SimulatedFeed(["AAPL", "MSFT"], seed=7, start=START), 50)
    b = run(SimulatedFeed(["AAPL", "MSFT"], seed=7, start=START), 50)
    c = run(SimulatedFeed(["AAPL", "MSFT"], seed=8, start=START), 50)
    assert a == b
    assert a != c
    # Adding a symbol does not change another symbol's path.
    d = run(SimulatedFeed(["AAPL", "NVDA", "MSFT"], seed=7, start=START), 50)
    assert [x for x in d if x.symbol == "AAPL"] == [x for x in a if x.symbol == "AAPL"]


def test_simulated_bars_look_like_market_data() -> None:
    bars = run(SimulatedFeed(["AAPL"], seed=1, interval_seconds=0.5, start=START), 200)
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in bars)
    assert all(b.volume >= 100 for b in bars)
    assert 150 < bars[-1].close < 230  # starts near AAPL's level and wanders, not explodes
    assert bars[1].timestamp - bars[0].timestamp == timedelta(seconds=0.5)


def test_gap_hook_drops_bars_and_the_guard_counts_them() -> None:
    feed = SimulatedFeed(["AAPL", "MSFT"], seed=1, start=START)
    guard = DataQualityGuard(["AAPL", "MSFT"], 1.0, 10.0, started_mono=0.0)
    for bar in run(feed, 3):
        guard.observe(bar, 0.0, START)
    feed.inject_gap("AAPL", bars=2)
    bars = run(feed, 3)
    assert [b.symbol for b in bars].count("AAPL") == 1
    seen = [guard.observe(b, 0.0, START) for b in bars]
    assert guard.symbols["AAPL"].missing_bars == 2
    assert guard.symbols["MSFT"].missing_bars == 0
    assert sum(s.missing_bars for s in seen) == 2


def test_stale_hook_silences_the_feed() -> None:
    feed = SimulatedFeed(["AAPL", "MSFT"], seed=1, start=START)
    feed.inject_stale(ticks=4)
    assert run(feed, 4) == []
    assert len(feed.next_bars()) == 2


def test_outlier_hook_and_guard() -> None:
    feed = SimulatedFeed(["AAPL"], seed=1, start=START)
    guard = DataQualityGuard(["AAPL"], 1.0, 10.0, started_mono=0.0)
    for bar in run(feed, 2):
        guard.observe(bar, 0.0, START)
    price = guard.last_price("AAPL")
    feed.inject_outlier("AAPL", factor=1.5)
    (bad,) = feed.next_bars()
    assert guard.observe(bad, 0.0, START).verdict is BarVerdict.OUTLIER
    assert guard.last_price("AAPL") == price  # refused: does not move the price
    assert guard.is_suspect("AAPL")
    (good,) = feed.next_bars()
    assert guard.observe(good, 0.0, START).verdict is BarVerdict.ACCEPTED
    assert not guard.is_suspect("AAPL")
    assert guard.outliers == 1


def test_guard_accepts_a_confirmed_jump() -> None:
    bars = Bars()
    guard = DataQualityGuard(["AAPL"], 1.0, 10.0, started_mono=0.0, confirm_bars=3)
    guard.observe(bars("AAPL", 100.0), 0.0, START)
    verdicts = [guard.observe(bars("AAPL", p), 0.0, START).verdict for p in (130.0, 131.0, 130.5)]
    assert verdicts == [BarVerdict.OUTLIER, BarVerdict.OUTLIER, BarVerdict.ACCEPTED]
    assert guard.last_price("AAPL") == 130.5


def test_guard_refuses_nonsense_and_out_of_order_bars() -> None:
    bars = Bars()
    guard = DataQualityGuard(["AAPL"], 1.0, 10.0, started_mono=0.0)
    first = bars("AAPL", 100.0)
    guard.observe(first, 0.0, START)
    assert guard.observe(first, 0.0, START).verdict is BarVerdict.OUT_OF_ORDER
    assert guard.observe(bars("AAPL", 0.0), 0.0, START).verdict is BarVerdict.OUTLIER
    assert guard.observe(bars("ZZZZ", 1.0), 0.0, START).verdict is BarVerdict.UNKNOWN_SYMBOL


def test_guard_staleness_is_measured_on_arrival() -> None:
    guard = DataQualityGuard(["AAPL"], 1.0, 10.0, started_mono=100.0)
    assert guard.staleness("AAPL", 103.0) == 3.0  # nothing yet: since start
    # A replayed bar from last year is fresh data when it arrives.
    old = Bar("AAPL", START - timedelta(days=365), 1, 1, 1, 1, 1)
    guard.observe(old, 104.0, START)
    assert guard.staleness("AAPL", 105.0) == 1.0
    assert guard.is_stale("AAPL", 120.0, limit_seconds=10)


@pytest.mark.anyio
async def test_engine_counts_missing_bars_and_outliers_and_refuses_on_outlier() -> None:
    bars = Bars()
    engine = await ready_engine(bars=bars)
    await engine.on_bar(bars("AAPL", 100.5, skip=3))
    await engine.on_bar(bars("AAPL", 180.0))
    view = engine.state_view()["data"]
    assert (view["missing_bars"], view["outliers"]) == (3, 1)
    result = await engine.submit(market("AAPL", Side.BUY, 1))
    assert result.rejection is not None
    assert result.rejection.reason is RejectReason.OUTLIER_PRICE
    registry = engine.metrics.registry
    assert registry.get_sample_value("quantzoo_engine_missing_bars_total", {"symbol": "AAPL"}) == 3
    assert registry.get_sample_value("quantzoo_engine_outlier_prices_total", {"symbol": "AAPL"}) == 1


@pytest.mark.anyio
async def test_simulated_stream_paces_itself() -> None:
    feed = SimulatedFeed(["AAPL", "MSFT"], seed=3, interval_seconds=0.01)
    seen: list[Bar] = []
    async for bar in feed.stream():
        seen.append(bar)
        if len(seen) == 6:
            await feed.close()
    assert [b.symbol for b in seen] == ["AAPL", "MSFT"] * 3


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("timestamp,symbol,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def test_replay_loads_and_groups_bars(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "bars.csv",
        [
            "2026-01-05T14:31:00Z,msft,400,401,399,400.5,1000",
            "2026-01-05T14:30:00Z,AAPL,190,191,189,190.5,1000",
            "2026-01-05T14:31:00Z,AAPL,190.5,192,190,191,1200",
            "2026-01-05T14:30:00Z,MSFT,399,400,398,400,900",
            "2026-01-05T14:31:00Z,NVDA,120,121,119,120,900",
        ],
    )
    bars = load_bars(csv)
    assert [b.symbol for b in bars[:2]] == ["AAPL", "MSFT"]
    assert infer_bar_interval(bars) == 60.0
    feed = ReplayFeed(bars, ["AAPL", "MSFT"], interval_seconds=0.0)
    assert [[b.symbol for b in step] for step in feed.steps()] == [["AAPL", "MSFT"], ["MSFT", "AAPL"]]


@pytest.mark.anyio
async def test_replay_streams_then_goes_quiet(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "bars.csv", ["2026-01-05T14:30:00,AAPL,1,1,1,1,1", "2026-01-05T14:31:00,AAPL,2,2,2,2,1"]
    )
    feed = ReplayFeed.from_csv(csv, ["AAPL"], interval_seconds=0.0)
    closes = [bar.close async for bar in feed.stream()]
    assert closes == [1.0, 2.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("timestamp,symbol,close\n", "missing columns"),
        ("timestamp,symbol,open,high,low,close,volume\nnot-a-time,AAPL,1,1,1,1,1\n", "bars.csv:2"),
        ("timestamp,symbol,open,high,low,close,volume\n2026-01-05T14:30:00,AAPL,x,1,1,1,1\n", "bars.csv:2"),
    ],
)
def test_replay_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(content)
    with pytest.raises(ReplayError, match=message):
        load_bars(path)


@pytest.mark.anyio
async def test_engine_with_live_symbol_change(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    followed: list[list[str]] = []

    async def follow(symbols: list[str]) -> None:
        followed.append(symbols)

    engine.on_symbols_changed = follow
    await engine.apply_spec(make_spec(symbols=["AAPL", "NVDA"]))
    assert followed == [["AAPL", "NVDA"]]
    result = await engine.submit(market("MSFT", Side.BUY, 1))
    assert result.rejection is not None
    assert result.rejection.reason is RejectReason.UNKNOWN_SYMBOL
    assert [row["symbol"] for row in engine.symbols_view()] == ["AAPL", "NVDA"]
