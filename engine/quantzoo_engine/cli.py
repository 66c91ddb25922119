"""`quantzoo`: the command line a quant uses.

quantzoo strategies                                  the strategies installed (entry points)
quantzoo backtest --bars bars.csv --spec ts.yaml     a backtest of a TradingSystem manifest
quantzoo backtest --bars bars.parquet --strategy bollingerReversion --params '{"window": 30}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def _spec_from_args(args: argparse.Namespace, bar_symbols: list[str]) -> Any:
    from quantzoo_api.types import parse_spec

    raw: dict[str, Any] = {}
    if args.spec:
        doc = yaml.safe_load(Path(args.spec).read_text()) or {}
        raw = dict(doc.get("spec", doc) if doc.get("kind") == "TradingSystem" else doc)
    strategy = dict(raw.get("strategy") or {})
    if args.strategy and args.strategy != strategy.get("name"):
        strategy = {"name": args.strategy, "params": {}}  # another strategy: the spec's params are not its
    if args.params:
        strategy["params"] = json.loads(args.params)
    if strategy:
        raw["strategy"] = strategy
    if args.symbols:
        raw["symbols"] = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    elif "symbols" not in raw:
        raw["symbols"] = bar_symbols[:100]
    if args.initial_cash is not None:
        raw["broker"] = {**(raw.get("broker") or {}), "initialCash": args.initial_cash}
    return parse_spec(raw)


def backtest(args: argparse.Namespace) -> int:
    from quantzoo_engine.backtest import BarsError, load_bars, run_backtest
    from quantzoo_engine.backtest.report import write_report
    from quantzoo_engine.sdk.registry import StrategyConfigError

    try:
        bars = load_bars(args.bars)
        spec = _spec_from_args(args, sorted({b.symbol for b in bars}))
        result = run_backtest(spec, bars)
    except (BarsError, StrategyConfigError, OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        print(f"quantzoo backtest: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"quantzoo backtest: spec.{where}: {first['msg']}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report = write_report(result, out)
    s = report["summary"]
    sharpe = "n/a" if s["sharpe"] is None else f"{s['sharpe']:.2f}"
    print(
        f"backtest {spec.strategy.name} on {','.join(spec.symbols)}: {result.bars} bars in "
        f"{result.wall_seconds:.2f} s ({result.bars_per_second:,.0f} bars/s); "
        f"return {s['total_return_pct']:.2f}%, "
        f"Sharpe {sharpe}, max drawdown {s['max_drawdown_pct']:.2f}%, {s['trades']} trades, "
        f"{s['fills']} fills, {s['orders_refused']} refused by the risk checks; "
        f"report: {out / 'report.html'} and {out / 'report.json'}"
    )
    if args.report_stdout:  # the cluster Job's report channel: its pod's log outlives the pod's exit
        print(json.dumps(report, separators=(",", ":"), default=str), flush=True)
    return 0


def sample_bars(args: argparse.Namespace) -> int:
    from datetime import datetime

    from quantzoo_api.sessions import UnknownCalendar

    from quantzoo_engine.backtest.synthetic import synthetic_bars, write_bars

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    try:
        start = datetime.fromisoformat(args.start)
        bars = list(
            synthetic_bars(
                args.bars,
                symbols,
                start=start,
                seed=args.seed,
                interval_seconds=args.interval,
                calendar=args.calendar,
            )
        )
        write_bars(bars, Path(args.out))
    except (ValueError, UnknownCalendar, OSError) as exc:
        print(f"quantzoo sample-bars: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(bars)} bars of {','.join(symbols)} to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantzoo", description="QuantZoo command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("strategies", help="list the strategies installed (entry-point group quantzoo.strategies)")
    bt = sub.add_parser("backtest", help="run historical bars through the engine's own code path")
    bt.add_argument(
        "--bars", required=True, help="CSV or Parquet: timestamp,symbol,open,high,low,close,volume"
    )
    bt.add_argument("--spec", help="a TradingSystem manifest (YAML) or its spec; other flags override it")
    bt.add_argument("--strategy", help="strategy name (entry-point group quantzoo.strategies)")
    bt.add_argument("--params", help="strategy parameters as a JSON object (camelCase keys)")
    bt.add_argument("--symbols", help="comma-separated; default: the spec's, else every symbol in the bars")
    bt.add_argument("--initial-cash", type=float, default=None)
    bt.add_argument("--out", default="backtest-report", help="directory for report.json and report.html")
    bt.add_argument(
        "--report-stdout",
        action="store_true",
        help="also print the JSON report as the last line of stdout (`kubectl quantzoo backtest` reads it)",
    )
    sample = sub.add_parser("sample-bars", help="write seeded synthetic bars (CSV, or Parquet for .parquet)")
    sample.add_argument("--out", required=True)
    sample.add_argument("--symbols", default="AAPL")
    sample.add_argument("--bars", type=int, default=5_000, help="time steps (one bar per symbol each)")
    sample.add_argument("--interval", type=float, default=60.0, help="seconds between bars")
    sample.add_argument("--calendar", default="24/7", help="only while this calendar's market is open")
    sample.add_argument("--start", default="2026-01-05T14:30:00+00:00")
    sample.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.command == "sample-bars":
        return sample_bars(args)
    if args.command == "strategies":
        from quantzoo_engine.sdk import registry

        for name, ep in sorted(registry.available().items()):
            print(f"{name}\t{ep.value}")
        return 0
    return backtest(args)


if __name__ == "__main__":
    sys.exit(main())
