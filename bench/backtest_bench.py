"""Backtest speed, side by side in one process: the same moving-average crossover on the same seeded
one-minute bars in QuantZoo, backtrader and NautilusTrader. Writes bench/results/backtest.json.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python -m bench.backtest_bench --bars 1000000

The strategy, identical in all three: a fast and a slow simple moving average of closes (rolling sums,
the same arithmetic everywhere); once the slow window is full the first regime (fast above or below
slow) is only noted, and every later change of regime sets the target position to +size or -size with
one market order. Fill model, made the same on purpose so the trades can be compared bar for bar:
- QuantZoo: its paper broker fills a market order at the close of the bar that produced it;
- backtrader: `cheat_on_close` (broker.set_coc(True)): a market order fills at that bar's close;
- NautilusTrader: bar execution on a NETTING margin account: a market order submitted in `on_bar` fills
  against the bar just processed, i.e. at its close.
Timed: the framework's run over bars already in its own in-memory form (QuantZoo: Bar objects;
backtrader: a preloaded pandas feed; NautilusTrader: Bar objects added to the engine), wall clock.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "backtest.json"
FAST, SLOW, SIZE = 10, 30, 100
START = datetime(2024, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- data
def make_bars(n: int, seed: int) -> list[tuple[datetime, float, float, float, float]]:
    """(time, open, high, low, close), prices in cents (an equity's tick), one a minute, around the clock."""
    rng = random.Random(seed)
    out, price = [], 100.0
    for i in range(n):
        prev = price
        price = max(1.0, price * math.exp(rng.gauss(0.0, 0.0008)))
        o, c = round(prev, 2), round(price, 2)
        out.append((START + timedelta(minutes=i), o, max(o, c), min(o, c), c))
    return out


class Crossover:
    """The signal, shared verbatim by the three implementations: the new target, or None."""

    def __init__(self) -> None:
        self.fast: deque[float] = deque()
        self.slow: deque[float] = deque()
        self.fast_sum = self.slow_sum = 0.0
        self.regime = 0

    def update(self, close: float) -> int | None:
        self.fast.append(close)
        self.fast_sum += close
        if len(self.fast) > FAST:
            self.fast_sum -= self.fast.popleft()
        self.slow.append(close)
        self.slow_sum += close
        if len(self.slow) > SLOW:
            self.slow_sum -= self.slow.popleft()
        if len(self.slow) < SLOW:
            return None
        f, s = self.fast_sum / FAST, self.slow_sum / SLOW
        regime = 1 if f > s else -1 if f < s else self.regime
        changed = self.regime != 0 and regime != self.regime
        self.regime = regime
        return regime * SIZE if changed else None


# ---------------------------------------------------------------- QuantZoo
def run_quantzoo(rows: list[tuple]) -> tuple[float, list[tuple[int, str, float]]]:
    from quantzoo_api.types import parse_spec
    from quantzoo_engine.backtest import run_backtest
    from quantzoo_engine.feed.base import Bar
    from quantzoo_engine.sdk import OrderIntent, Strategy, StrategyContext

    class QzCrossover(Strategy[Any]):
        def __init__(self) -> None:
            super().__init__(None)
            self.signal = Crossover()

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> tuple[OrderIntent, ...]:
            target = self.signal.update(bar.close)
            if target is None:
                return ()
            intent = OrderIntent.toward(bar.symbol, target, ctx.net_position)
            return (intent,) if intent else ()

    bars = [Bar("AAPL", t, o, h, lo, c, 1e6) for t, o, h, lo, c in rows]
    spec = parse_spec(
        {
            "symbols": ["AAPL"],
            "risk": {"maxOrdersPerSecond": 10_000, "maxOrdersPerMinute": 600_000, "maxDailyDrawdownPct": 100},
            "marketData": {"intervalSeconds": 60},
        }
    )
    logging.getLogger("quantzoo_engine").setLevel(logging.WARNING)
    started = time.perf_counter()
    result = run_backtest(spec, bars, strategy=QzCrossover())
    elapsed = time.perf_counter() - started
    index = {t: i for i, (t, *_) in enumerate(rows)}
    return elapsed, [(index[f.at], str(f.side), f.quantity) for f in result.fills]


# ---------------------------------------------------------------- backtrader
def run_backtrader(rows: list[tuple]) -> tuple[float, list[tuple[int, str, float]]]:
    import backtrader as bt
    import pandas as pd

    df = pd.DataFrame(rows, columns=["datetime", "open", "high", "low", "close"]).set_index("datetime")
    df.index = df.index.tz_convert(None)
    df["volume"] = 1e6
    fills: list[tuple[int, str, float]] = []

    class BtCrossover(bt.Strategy):
        def __init__(self) -> None:
            self.signal = Crossover()
            self.target = 0

        def next(self) -> None:
            target = self.signal.update(self.data.close[0])
            if target is not None and target != self.target:
                delta = target - self.target
                fills.append((len(self) - 1, "buy" if delta > 0 else "sell", float(abs(delta))))
                self.order_target_size(target=target)
                self.target = target

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=df))
    cerebro.addstrategy(BtCrossover)
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.set_coc(True)
    started = time.perf_counter()
    (strategy,) = cerebro.run(preload=True, runonce=True)
    elapsed = time.perf_counter() - started
    assert strategy.position.size == strategy.target, "backtrader did not fill every order"
    return elapsed, fills


# ---------------------------------------------------------------- NautilusTrader
def run_nautilus(rows: list[tuple]) -> tuple[float, list[tuple[int, str, float]]]:
    import pandas as pd
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, StrategyConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import BarType
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import Money, Quantity
    from nautilus_trader.persistence.wranglers import BarDataWrangler
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.trading.strategy import Strategy

    instrument = TestInstrumentProvider.equity(symbol="AAPL", venue="XNAS")
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-EXTERNAL")
    df = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close"]).set_index("timestamp")
    df["volume"] = 1e6
    bars = BarDataWrangler(bar_type, instrument).process(df)
    index = {b.ts_event: i for i, b in enumerate(bars)}
    fills: list[tuple[int, str, float]] = []

    class NtConfig(StrategyConfig, frozen=True):
        pass

    class NtCrossover(Strategy):
        def __init__(self) -> None:
            super().__init__(NtConfig())
            self.signal = Crossover()
            self.target = 0

        def on_start(self) -> None:
            self.subscribe_bars(bar_type)

        def on_bar(self, bar) -> None:
            target = self.signal.update(bar.close.as_double())
            if target is None or target == self.target:
                return
            delta = target - self.target
            side = OrderSide.BUY if delta > 0 else OrderSide.SELL
            order = self.order_factory.market(instrument.id, side, Quantity.from_int(abs(delta)))
            self.submit_order(order)
            self.target = target

        def on_order_filled(self, event) -> None:
            side = "buy" if event.order_side == OrderSide.BUY else "sell"
            fills.append((index.get(event.ts_event, -1), side, float(event.last_qty)))

    engine = BacktestEngine(
        BacktestEngineConfig(trader_id=TraderId("BENCH-001"), logging=LoggingConfig(log_level="ERROR"))
    )
    engine.add_venue(
        venue=Venue("XNAS"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000, USD)],
        bar_execution=True,
    )
    engine.add_instrument(instrument)
    engine.add_strategy(NtCrossover())
    started = time.perf_counter()
    engine.add_data(bars)
    engine.run()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, fills


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = make_bars(args.bars, args.seed)
    runs = {"quantzoo": run_quantzoo, "backtrader": run_backtrader, "nautilus_trader": run_nautilus}
    out: dict[str, Any] = {"bars": args.bars}
    trades: dict[str, list] = {}
    for name, run in runs.items():
        elapsed, fills = run(rows)
        trades[name] = fills
        out[name] = {
            "bars_per_second": round(args.bars / elapsed),
            "trades": len(fills),
            "seconds": round(elapsed, 2),
        }
        print(f"{name}: {out[name]}", flush=True)
    reference = trades["quantzoo"]
    out["trades_agree"] = all(t == reference for t in trades.values())
    if not out["trades_agree"]:
        for name, t in trades.items():
            first = next((i for i, (a, b) in enumerate(zip(reference, t, strict=False)) if a != b), None)
            out[name]["first_difference"] = (
                None if first is None else {"quantzoo": reference[first], name: t[first]}
            )
    qz = out["quantzoo"]["bars_per_second"]
    out["ratios"] = {
        f"quantzoo_over_{n}": round(qz / out[n]["bars_per_second"], 3) for n in runs if n != "quantzoo"
    }
    out["strategy"] = f"SMA crossover fast {FAST} / slow {SLOW}, target +-{SIZE} shares, market orders"
    out["fills"] = "market orders at the close of the signal bar in all three (see the module docstring)"
    out["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
