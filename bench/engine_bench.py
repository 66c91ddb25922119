"""Engine benchmark (not a test): what the safety-critical paths cost, in process, on this machine.

- pre-trade check cost per order: gathering the order's context and running every check (p50/p99 µs)
- orders per second through the risk checks and the paper broker (engine.submit end to end)
- engage -> HALTED: from receiving a kill-switch command to new orders being blocked (p50/p99 µs),
  and engage -> acknowledgement with working orders to cancel at the paper broker

Run: .venv/bin/python bench/engine_bench.py  (writes bench/results/engine.json)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quantzoo_api.killswitch import KillSwitchCommand, TradingState
from quantzoo_api.types import parse_spec
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.feed.base import Bar
from quantzoo_engine.metrics import EngineMetrics
from quantzoo_engine.orders import OrderRequest, OrderType, Side
from quantzoo_engine.strategy import NoopStrategy

RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"
CHECK_ORDERS = 50_000
SUBMIT_ORDERS = 20_000
ENGAGES = 5_000
ACKS = 2_000


def percentile(samples_ns: list[int], q: float) -> float:
    ordered = sorted(samples_ns)
    index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
    return ordered[index] / 1_000  # ns -> µs


def summary(samples_ns: list[int]) -> dict[str, float]:
    return {
        "p50_us": round(percentile(samples_ns, 50), 2),
        "p99_us": round(percentile(samples_ns, 99), 2),
        "mean_us": round(statistics.fmean(samples_ns) / 1_000, 2),
        "samples": len(samples_ns),
    }


async def ready_engine() -> TradingEngine:
    clock = ManualClock()
    # Limits wide enough that the benchmark measures checks passing, not the rate limiter refusing.
    spec = parse_spec(
        {
            "symbols": ["AAPL", "MSFT", "NVDA", "SPY"],
            "risk": {
                "maxOrdersPerSecond": 10_000,
                "maxOrdersPerMinute": 600_000,
                "maxPositionNotional": 1e10,
                "maxGrossExposure": 1e11,
                "staleDataSeconds": 86_400,
            },
        }
    )
    engine = TradingEngine(
        spec=spec,
        broker=PaperBroker(spec.broker.initial_cash, clock),
        clock=clock,
        strategy=NoopStrategy(NoopStrategy.Params()),
        metrics=EngineMetrics(),
    )
    engine.apply_kill_switch_now(KillSwitchCommand(engaged=False, source="bench"))
    engine.kill_switch_read()
    await engine.start()
    start = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    for i, (symbol, price) in enumerate({"AAPL": 190.0, "MSFT": 410.0, "NVDA": 120.0, "SPY": 560.0}.items()):
        await engine.on_bar(Bar(symbol, start + timedelta(seconds=i + 1), price, price, price, price, 1_000))
    return engine


def order(i: int) -> OrderRequest:
    side = Side.BUY if i % 2 == 0 else Side.SELL
    return OrderRequest(symbol="AAPL" if i % 3 else "MSFT", side=side, quantity=10)


async def bench_checks() -> dict[str, Any]:
    engine = await ready_engine()
    clock: ManualClock = engine.clock  # type: ignore[assignment]
    samples: list[int] = []
    perf = time.perf_counter_ns
    for i in range(CHECK_ORDERS):
        request = order(i)
        clock.advance(0.0002)  # 5,000 orders/s of simulated time: the rate windows stay realistic
        t0 = perf()
        rejection = engine.risk.evaluate(request, engine.pretrade_context(request), clock.monotonic())
        samples.append(perf() - t0)
        assert rejection is None, rejection
    return summary(samples)


async def bench_submit() -> dict[str, Any]:
    engine = await ready_engine()
    clock: ManualClock = engine.clock  # type: ignore[assignment]
    t0 = time.perf_counter()
    for i in range(SUBMIT_ORDERS):
        clock.advance(0.0002)
        result = await engine.submit(order(i))
        assert result.accepted, result.rejection
    elapsed = time.perf_counter() - t0
    return {
        "orders": SUBMIT_ORDERS,
        "seconds": round(elapsed, 3),
        "orders_per_second": round(SUBMIT_ORDERS / elapsed),
        "fills": engine.counts.filled,
    }


async def bench_engage() -> dict[str, Any]:
    engine = await ready_engine()
    to_halted: list[int] = []
    perf = time.perf_counter_ns
    for generation in range(1, 2 * ENGAGES, 2):
        engage = KillSwitchCommand(engaged=True, reason="bench", source="bench", generation=generation)
        t0 = perf()
        engine.apply_kill_switch_now(engage)
        halted = engine.trading_state is TradingState.HALTED
        to_halted.append(perf() - t0)
        assert halted
        engine.apply_kill_switch_now(
            KillSwitchCommand(engaged=False, source="bench", generation=generation + 1)
        )
    return summary(to_halted)


async def bench_engage_to_ack() -> dict[str, Any]:
    engine = await ready_engine()
    samples: list[int] = []
    cancelled = 0
    for generation in range(1, 2 * ACKS, 2):
        for k in range(5):  # five resting orders to cancel each time
            request = OrderRequest("SPY", Side.BUY, 1, OrderType.LIMIT, 540.0 - k)
            assert (await engine.submit(request)).accepted
        engage = KillSwitchCommand(engaged=True, reason="bench", source="bench", generation=generation)
        t0 = time.perf_counter_ns()
        ack = await engine.apply_kill_switch(engage)
        samples.append(time.perf_counter_ns() - t0)
        cancelled += len(ack.cancelled_orders)
        await engine.apply_kill_switch(
            KillSwitchCommand(engaged=False, source="bench", generation=generation + 1)
        )
        engine.clock.advance(1.0)  # type: ignore[attr-defined]
    return {**summary(samples), "working_orders_per_engage": 5, "cancelled_total": cancelled}


async def main() -> dict[str, Any]:
    results = {
        "pre_trade_check_per_order": await bench_checks(),
        "orders_through_risk_and_paper_broker": await bench_submit(),
        "engage_to_halted": await bench_engage(),
        "engage_to_ack_paper_broker": await bench_engage_to_ack(),
    }
    return {
        "benchmark": "engine",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": "in process, one asyncio loop, paper broker, manual clock; shared 2-core machine",
        "results": results,
    }


if __name__ == "__main__":
    report = asyncio.run(main())
    r = report["results"]
    check, submit, engage, ack = (
        r["pre_trade_check_per_order"],
        r["orders_through_risk_and_paper_broker"],
        r["engage_to_halted"],
        r["engage_to_ack_paper_broker"],
    )
    print(f"pre-trade checks per order : p50 {check['p50_us']} µs, p99 {check['p99_us']} µs")
    print(
        f"risk + paper broker        : {submit['orders_per_second']:,} orders/s ({submit['orders']} orders)"
    )
    print(f"engage -> HALTED           : p50 {engage['p50_us']} µs, p99 {engage['p99_us']} µs")
    print(f"engage -> ack (5 cancels)  : p50 {ack['p50_us']} µs, p99 {ack['p99_us']} µs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
