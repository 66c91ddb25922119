"""What the account-wide limits cost per order (issue #13, item 1): not a test.

An engine in a shared TradingAccount (real alpaca-py, AlpacaBroker owning only its orders) sends market
orders to the local fake Alpaca server (tests/engine/engine_fake_alpaca.py, in a thread of this
process) three ways, and the per-order time of `engine.submit` is compared:

- `no_account_limits`: ownership only (the client order id prefix, the owned book), no account checks
- `cached_1s`: the default, one reading of the whole account (account, positions, the last minute's
  orders: three reads side by side) serves every order for 1 s (ENGINE_ACCOUNT_CACHE_SECONDS=1)
- `read_every_order`: ENGINE_ACCOUNT_CACHE_SECONDS=0, the reading before every order

plus the in-memory check alone (`check_account_limits` on a cached reading, µs). The fake answers in
the same process (its HTTP server shares the GIL), so the absolute figures are this machine's loopback,
not Alpaca's internet round trip; the difference between the runs is what the limits add.

Run: .venv/bin/python -m bench.account_limits_bench  (under the heavy lock; writes
bench/results/account_limits.json)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantzoo_api.accounts import AccountLimits, order_id_prefix
from quantzoo_api.killswitch import KillSwitchCommand, TradingState
from quantzoo_api.types import parse_spec
from quantzoo_engine.broker.alpaca import AlpacaBroker
from quantzoo_engine.broker.base import AccountExposure
from quantzoo_engine.clock import SystemClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.feed.base import Bar
from quantzoo_engine.metrics import EngineMetrics
from quantzoo_engine.orders import OrderRequest, Side
from quantzoo_engine.risk.account_limits import AccountGuard, AccountView
from quantzoo_engine.risk.checks import PreTradeContext, check_account_limits
from quantzoo_engine.strategy import NoopStrategy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))  # the fake Alpaca server and free_port
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, ServerThread  # noqa: E402
from engine_helpers import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "account_limits.json"
ORDERS = int(os.environ.get("BENCH_ORDERS", "400"))
CHECKS = 50_000
LIMITS = AccountLimits(max_gross_exposure=1e11, max_daily_loss=1e11, max_orders_per_minute=600_000)


def summary_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1e3, 3),
        "mean_ms": round(statistics.fmean(samples) * 1e3, 3),
        "orders": len(samples),
    }


async def run(url: str, name: str, cache_seconds: float | None) -> tuple[dict[str, float], int]:
    spec = parse_spec(
        {
            "symbols": ["AAPL"],
            "strategy": {"name": "noop"},
            "broker": {"kind": "alpaca", "credentialsSecret": "k", "baseUrl": url},
            "risk": {"maxOrdersPerSecond": 10_000, "maxOrdersPerMinute": 600_000},
        }
    )
    prefix = order_id_prefix("bench", name)
    broker = AlpacaBroker(KEY, SECRET, url_override=url, owner_prefix=prefix, capital=1e6)
    guard = None
    if cache_seconds is not None:
        guard = AccountGuard(
            "bench", LIMITS, broker.account_exposure, time.monotonic, max_age_seconds=cache_seconds
        )
    engine = TradingEngine(
        spec=spec,
        broker=broker,
        clock=SystemClock(),
        strategy=NoopStrategy(NoopStrategy.Params()),
        metrics=EngineMetrics(),
        order_prefix=prefix,
        account_guard=guard,
        reconcile_interval_seconds=3600,
    )
    engine.apply_kill_switch_now(KillSwitchCommand(engaged=False, source="test"))
    engine.kill_switch_read()
    await engine.start()
    await engine.on_bar(Bar("AAPL", datetime.now(UTC), 190.0, 190.0, 190.0, 190.0, 1_000))
    assert engine.trading_state is TradingState.ACTIVE
    samples: list[float] = []
    for i in range(ORDERS):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        started = time.perf_counter()
        result = await engine.submit(OrderRequest(symbol="AAPL", side=side, quantity=1))
        samples.append(time.perf_counter() - started)
        assert result.accepted, result.rejection
    await broker.close()
    return summary_ms(samples), guard.reads if guard else 0


def check_only() -> dict[str, float]:
    view = AccountView("bench", LIMITS, AccountExposure(1_000.0, 1e6, 1e6, 10), 500.0, 2)
    order = OrderRequest(symbol="AAPL", side=Side.BUY, quantity=1)
    ctx = PreTradeContext(
        trading_state=TradingState.ACTIVE,
        symbol_known=True,
        last_price=190.0,
        data_stale=False,
        data_suspect=False,
        position=0.0,
        working_same_side=0.0,
        working_net=0.0,
        gross_exposure=0.0,
        daily_drawdown_pct=0.0,
        account=view,
    )
    samples = []
    for _ in range(CHECKS):
        started = time.perf_counter_ns()
        check_account_limits(order, ctx)
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return {"p50_us": round(samples[len(samples) // 2] / 1e3, 3), "samples": CHECKS}


async def main() -> dict[str, Any]:
    fake = FakeAlpaca()
    fake.cash = 1e9
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    with ServerThread(fake.app, port):
        # A first run warms the client, the server and the imports; not reported.
        await run(url, "warmup", None)
        for label, cache in (("no_account_limits", None), ("cached_1s", 1.0), ("read_every_order", 0.0)):
            fake.orders.clear()  # each run reads an account of the same size
            stats, reads = await run(url, label, cache)
            results[label] = {**stats, "account_reads": reads}
    base = results["no_account_limits"]["p50_ms"]
    for label in ("cached_1s", "read_every_order"):
        results[label]["added_p50_ms"] = round(results[label]["p50_ms"] - base, 3)
    results["check_in_memory"] = check_only()
    return results


if __name__ == "__main__":
    measured = asyncio.run(main())
    doc = {
        "benchmark": "account_limits",
        "measured_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": (
            "engine.submit per order, real alpaca-py to the fake Alpaca server in this process (loopback, "
            "shared GIL), owned book; shared 2-core machine"
        ),
        "results": measured,
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
