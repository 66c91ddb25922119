"""The backtester: bars through the engine's own path (strategy, risk checks, kill-switch state machine,
paper broker) on a simulated clock, its report, and `quantzoo backtest` as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from backtest_data import random_walk, write_csv, write_parquet
from quantzoo_api.types import parse_spec
from quantzoo_engine.backtest import load_bars, run_backtest
from quantzoo_engine.backtest.performance import max_drawdown_pct, sharpe, trades_from_fills
from quantzoo_engine.backtest.report import build_report, render_html
from quantzoo_engine.orders import Fill, Side
from quantzoo_engine.sdk import OrderIntent, Strategy, StrategyContext

CROSSOVER = {"name": "maCrossover", "params": {"fastWindow": 5, "slowWindow": 20, "orderQuantity": 50}}


def spec(**camel: Any):
    return parse_spec({"symbols": ["AAPL"], **camel})


def test_a_crossover_backtest_trades_through_the_engine() -> None:
    result = run_backtest(spec(strategy=CROSSOVER), random_walk(3_000))
    assert result.bars == 3_000
    assert result.submitted > 10
    assert len(result.fills) == result.submitted  # market orders, filled at the bar's close
    assert result.final_trading_state == "ACTIVE"
    assert len(result.equity) == 3_000
    # The simulated clock followed the bars: fills carry bar times, not the wall clock.
    assert result.fills[0].at.year == 2026


def test_the_same_bars_from_csv_and_parquet_give_the_same_backtest(tmp_path: Path) -> None:
    bars = random_walk(1_000)
    a = run_backtest(spec(strategy=CROSSOVER), load_bars(write_csv(bars, tmp_path / "b.csv")))
    b = run_backtest(spec(strategy=CROSSOVER), load_bars(write_parquet(bars, tmp_path / "b.parquet")))
    assert [(f.at, f.side, f.quantity, f.price) for f in a.fills] == [
        (f.at, f.side, f.quantity, f.price) for f in b.fills
    ]


class _AlwaysBuy(Strategy[Any]):
    def __init__(self) -> None:
        super().__init__(None)

    def on_bar(self, bar, ctx: StrategyContext) -> list[OrderIntent]:
        return [OrderIntent(bar.symbol, Side.BUY, 10)]


def test_orders_the_risk_checks_refuse_are_counted_by_reason() -> None:
    result = run_backtest(spec(risk={"maxPositionNotional": 5_000}), random_walk(200), strategy=_AlwaysBuy())
    # About 100 a share: four or five buys of 10 fit in 5,000 notional, every later one is refused.
    assert result.submitted in (4, 5)
    refused = 200 - result.submitted
    assert result.rejected_by_reason == {"max_position_notional": refused}
    report = build_report(result)
    assert report["risk_refusals_by_reason"] == {"max_position_notional": refused}
    assert report["summary"]["orders_refused"] == refused


def test_the_rate_limit_runs_on_simulated_time() -> None:
    # Ten bars a second of simulated time: a limit of 2 orders a second refuses most of them.
    bars = random_walk(100, step=timedelta(milliseconds=100))
    result = run_backtest(spec(risk={"maxOrdersPerSecond": 2}), bars, strategy=_AlwaysBuy())
    assert result.rejected_by_reason.get("order_rate_per_second", 0) > 50


def test_an_engaged_kill_switch_in_the_spec_means_no_trades() -> None:
    result = run_backtest(spec(strategy=CROSSOVER, killSwitch={"engaged": True}), random_walk(2_000))
    assert (result.submitted, result.final_trading_state) == (0, "HALTED")


def test_trades_from_fills_pairs_entries_and_exits() -> None:
    t = datetime(2026, 1, 5, tzinfo=UTC)
    fills = [
        Fill("1", "AAPL", Side.BUY, 10, 100.0, t),
        Fill("2", "AAPL", Side.SELL, 20, 110.0, t + timedelta(minutes=1)),  # close long, open short 10
        Fill("3", "AAPL", Side.BUY, 10, 105.0, t + timedelta(minutes=2)),
    ]
    trades = trades_from_fills(fills)
    assert [(x.side, x.quantity, x.entry_price, x.exit_price, x.pnl) for x in trades] == [
        ("long", 10, 100.0, 110.0, 100.0),
        ("short", 10, 110.0, 105.0, 50.0),
    ]


def test_drawdown_and_sharpe() -> None:
    assert max_drawdown_pct([100, 120, 90, 130, 65]) == pytest.approx(50.0)
    assert sharpe([0.01, 0.01], 252) is None  # no variation
    assert sharpe([0.01, -0.01, 0.02], 1) == pytest.approx(0.006667 / 0.015275, rel=1e-3)


def test_the_html_report_has_the_plots_and_tables() -> None:
    result = run_backtest(spec(strategy=CROSSOVER), random_walk(1_000))
    page = render_html(json.loads(json.dumps(build_report(result), default=str)))
    assert page.count("<svg") == 3
    for heading in ("Equity curve", "Drawdown", "Returns", "refused by the risk checks", "Trades", "Fills"):
        assert heading in page


def quantzoo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("quantzoo")
    return subprocess.run(
        [str(cli), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_the_cli_backtests_a_tradingsystem_manifest(tmp_path: Path) -> None:
    write_parquet(random_walk(2_000), tmp_path / "bars.parquet")
    manifest = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "bb"},
        "spec": {"symbols": ["AAPL"], "strategy": {"name": "bollingerReversion", "params": {"window": 30}}},
    }
    (tmp_path / "ts.json").write_text(json.dumps(manifest))  # JSON is YAML
    done = quantzoo("backtest", "--bars", "bars.parquet", "--spec", "ts.json", "--out", "rep", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "backtest bollingerReversion on AAPL: 2000 bars" in done.stdout
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["strategy"] == {"name": "bollingerReversion", "params": {"window": 30}}
    assert (tmp_path / "rep" / "report.html").read_text().startswith("<!doctype html>")


@pytest.mark.slow
def test_the_cli_names_a_bad_parameter(tmp_path: Path) -> None:
    write_csv(random_walk(10), tmp_path / "bars.csv")
    done = quantzoo(
        "backtest", "--bars", "bars.csv", "--strategy", "breakout", "--params", '{"window": 0}', cwd=tmp_path
    )
    assert done.returncode == 2
    assert "strategy.params.window" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_stdout_prints_the_report_as_the_last_line(tmp_path: Path, capsys) -> None:
    """How the cluster Job hands its report over: the last line of its log is report.json, compact."""
    from quantzoo_engine import cli

    write_csv(random_walk(300), tmp_path / "bars.csv")
    args = ["backtest", "--bars", str(tmp_path / "bars.csv"), "--strategy", "maCrossover"]
    assert cli.main([*args, "--out", str(tmp_path / "rep"), "--report-stdout"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("backtest maCrossover on AAPL: 300 bars")
    assert json.loads(lines[-1]) == json.loads((tmp_path / "rep" / "report.json").read_text())
    assert cli.main([*args, "--out", str(tmp_path / "rep2")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # not without the flag
