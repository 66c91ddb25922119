"""The backtest report: one JSON document, and an HTML page (inline SVG plots, no JavaScript, no
external assets) with the equity curve, drawdown, the distribution of returns, trades, fills and the
orders the risk checks refused, by reason."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantzoo_engine.backtest.backtester import BacktestResult
from quantzoo_engine.backtest.performance import (
    TRADING_DAYS_PER_YEAR,
    daily_closes,
    max_drawdown_pct,
    returns,
    sharpe,
    trades_from_fills,
)

MAX_PLOT_POINTS = 1_500
MAX_ROWS = 500  # trades/fills listed in the HTML (the JSON has them all)
TRADE_COLUMNS = ["symbol", "side", "quantity", "entry_time", "entry_price", "exit_time", "exit_price", "pnl"]
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:960px} table{border-collapse:collapse;margin:.5em 0} "
    "td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;font-size:13px} h2{margin-top:1.5em}"
)
FILL_COLUMNS = ["at", "symbol", "side", "quantity", "price", "order_id"]


def build_report(result: BacktestResult) -> dict[str, Any]:
    equity = list(result.equity)
    daily = daily_closes(result.times, equity)
    if len(daily) >= 3:
        period_returns, per_year, basis = returns(daily), TRADING_DAYS_PER_YEAR, "daily"
    else:  # under three days: per-bar returns, annualised as if every trading day looked like this one
        period_returns = returns(equity)
        per_day = len(equity) / max(len(daily), 1)
        per_year, basis = TRADING_DAYS_PER_YEAR * per_day, "per-bar"
    trades = trades_from_fills(result.fills)
    closed = [t for t in trades if t.pnl is not None]
    final = equity[-1] if equity else result.initial_equity
    spec = result.spec
    return {
        "strategy": {"name": spec.strategy.name, "params": dict(spec.strategy.params)},
        "symbols": list(spec.symbols),
        "period": {"start": result.started, "end": result.ended, "bars": result.bars},
        "summary": {
            "initial_equity": round(result.initial_equity, 2),
            "final_equity": round(final, 2),
            "total_return_pct": round(100.0 * (final / result.initial_equity - 1.0), 4),
            "sharpe": None if (s := sharpe(period_returns, per_year)) is None else round(s, 4),
            "sharpe_basis": basis,
            "max_drawdown_pct": round(max_drawdown_pct(equity), 4),
            "trades": len(trades),
            "closed_trades": len(closed),
            "win_rate_pct": round(100.0 * sum(t.pnl > 0 for t in closed) / len(closed), 2)
            if closed
            else None,
            "fills": len(result.fills),
            "orders_submitted": result.submitted,
            "orders_refused": sum(result.rejected_by_reason.values()),
            "final_trading_state": result.final_trading_state,
        },
        "risk_refusals_by_reason": dict(sorted(result.rejected_by_reason.items())),
        "strategy_health": result.strategy_health,
        "speed": {
            "wall_seconds": round(result.wall_seconds, 3),
            "bars_per_second": round(result.bars_per_second),
        },
        "equity_curve": _downsample(
            [{"t": t.isoformat(), "equity": round(e, 2)} for t, e in zip(result.times, equity, strict=True)]
        ),
        "trades": [t.to_dict() for t in trades],
        "fills": [
            {
                "order_id": f.order_id,
                "symbol": f.symbol,
                "side": str(f.side),
                "quantity": f.quantity,
                "price": f.price,
                "at": f.at,
            }
            for f in result.fills
        ],
    }


def _downsample(rows: list[Any], limit: int = MAX_PLOT_POINTS) -> list[Any]:
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    picked = [rows[int(i * step)] for i in range(limit)]
    picked[-1] = rows[-1]
    return picked


def _frame(width: int, height: int) -> str:
    return (
        f'<svg width="{width}" height="{height}" role="img"><rect width="100%" height="100%" fill="#fafafa"/>'
    )


def _polyline(values: Sequence[float], width: int = 900, height: int = 220, color: str = "#1f6feb") -> str:
    if len(values) < 2:
        return f'<svg width="{width}" height="{height}"><text x="10" y="20">not enough points</text></svg>'
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 10 - (v - lo) / span * (height - 20):.1f}" for i, v in enumerate(values)
    )
    return (
        f"{_frame(width, height)}"
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
        f'<text x="4" y="12" font-size="11">{hi:,.2f}</text>'
        f'<text x="4" y="{height - 2}" font-size="11">{lo:,.2f}</text></svg>'
    )


def _histogram(values: Sequence[float], bins: int = 40, width: int = 900, height: int = 180) -> str:
    if not values:
        return "<p>no returns</p>"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / span * bins), bins - 1)] += 1
    top = max(counts)
    bw = width / bins
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{height - 14 - c / top * (height - 24):.1f}" width="{bw - 1:.1f}" '
        f'height="{c / top * (height - 24):.1f}" fill="#8250df"/>'
        for i, c in enumerate(counts)
    )
    return (
        f"{_frame(width, height)}{bars}"
        f'<text x="2" y="{height - 2}" font-size="11">{100 * lo:.3f}%</text>'
        f'<text x="{width - 60}" y="{height - 2}" font-size="11">{100 * hi:.3f}%</text></svg>'
    )


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows[:MAX_ROWS]
    )
    more = f"<p>{len(rows) - MAX_ROWS} more in report.json</p>" if len(rows) > MAX_ROWS else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def render_html(report: dict[str, Any]) -> str:
    curve = [p["equity"] for p in report["equity_curve"]]
    peak, dd = float("-inf"), []
    for v in curve:
        peak = max(peak, v)
        dd.append(-100.0 * (peak - v) / peak if peak > 0 else 0.0)
    s = report["summary"]
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in s.items()
    )
    refusals = report["risk_refusals_by_reason"]
    refusal_rows = [{"reason": k, "orders": v} for k, v in refusals.items()] or [
        {"reason": "none", "orders": 0}
    ]
    title = f"Backtest: {report['strategy']['name']} on {', '.join(report['symbols'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(str(report["period"]["start"]))} to {html.escape(str(report["period"]["end"]))},
{report["period"]["bars"]} bars; parameters {html.escape(json.dumps(report["strategy"]["params"]))}</p>
<h2>Summary</h2><table>{summary}</table>
<h2>Equity curve</h2>{_polyline(curve)}
<h2>Drawdown (%)</h2>{_polyline(dd, height=140, color="#cf222e")}
<h2>Returns between equity points</h2>{_histogram(returns(curve))}
<h2>Orders refused by the risk checks, by reason</h2>{_table(refusal_rows, ["reason", "orders"])}
<h2>Trades</h2>{_table(report["trades"], TRADE_COLUMNS)}
<h2>Fills</h2>{_table(report["fills"], FILL_COLUMNS)}
</body></html>
"""


def write_report(result: BacktestResult, out_dir: Path) -> dict[str, Any]:
    """Writes report.json and report.html into `out_dir`; returns the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(result)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.html").write_text(render_html(json.loads(json.dumps(report, default=str))))
    return report
