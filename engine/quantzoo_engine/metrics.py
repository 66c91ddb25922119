"""Every metric the engine exports, declared once (names fixed by docs/metrics.md, Engine section).

Each app instance gets its own CollectorRegistry, so tests can run several engines in one process.
Counters and histograms are updated where things happen; the state gauges (positions, P&L, exposure,
staleness) are refreshed from the engine when /metrics is scraped, so they are never stale themselves.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from quantzoo_api.killswitch import TradingState

# The `_created` series would add names outside docs/metrics.md (and nothing reads them). This is
# process-wide in prometheus-client; it only drops those timestamps.
disable_created_metrics()

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ENGAGE_BUCKETS = (1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0)


# The kinds Engine.count_error counts; present at 0 from the start, so an error-rate panel reads 0, not
# "no data", on a healthy engine.
ERROR_KINDS = ("broker", "strategy", "internal", "kill_path")


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The runbook's own names (its alerts: unrealized_pnl_pct < -10, api_latency_seconds > 1).
        self.unrealized_pnl_pct = Gauge(
            "unrealized_pnl_pct", "Unrealized P&L as % of start-of-day equity", registry=r
        )
        self.api_latency_seconds = Gauge(
            "api_latency_seconds",
            "Latency of the most recent call, by api (broker, http)",
            ["api"],
            registry=r,
        )
        self.api_request_duration_seconds = Histogram(
            "quantzoo_engine_api_request_duration_seconds",
            "Distribution of call latency, by api (broker, http)",
            ["api"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.position_quantity = Gauge(
            "quantzoo_engine_position_quantity", "Signed position, by symbol", ["symbol"], registry=r
        )
        self.position_notional = Gauge(
            "quantzoo_engine_position_notional",
            "Signed position value at the last price",
            ["symbol"],
            registry=r,
        )
        self.positions = Gauge("quantzoo_engine_positions", "Number of non-flat positions", registry=r)
        self.gross_exposure = Gauge(
            "quantzoo_engine_gross_exposure", "Sum of abs(position notional)", registry=r
        )
        self.equity = Gauge("quantzoo_engine_equity", "Cash plus positions at the last price", registry=r)
        self.realized_pnl = Gauge("quantzoo_engine_realized_pnl", "Realized P&L today", registry=r)
        self.unrealized_pnl = Gauge("quantzoo_engine_unrealized_pnl", "Unrealized P&L", registry=r)
        self.daily_drawdown_pct = Gauge(
            "quantzoo_engine_daily_drawdown_pct",
            "Drawdown from today's equity peak, % (positive)",
            registry=r,
        )
        self.orders_submitted = Counter(
            "quantzoo_engine_orders_submitted_total", "Orders sent to the broker", ["side"], registry=r
        )
        self.orders_filled = Counter("quantzoo_engine_orders_filled_total", "Fills", ["side"], registry=r)
        self.orders_rejected = Counter(
            "quantzoo_engine_orders_rejected_total",
            "Pre-trade and broker rejections, by reason",
            ["reason"],
            registry=r,
        )
        self.orders_cancelled = Counter(
            "quantzoo_engine_orders_cancelled_total",
            "Cancellations, by cause (kill_switch, shutdown, strategy, no_proof_of_state)",
            ["cause"],
            registry=r,
        )
        self.orders_working = Gauge(
            "quantzoo_engine_orders_working", "Orders working at the broker (incl. in flight)", registry=r
        )
        self.data_staleness_seconds = Gauge(
            "quantzoo_engine_data_staleness_seconds",
            "Seconds since the last bar, by symbol",
            ["symbol"],
            registry=r,
        )
        self.missing_bars = Counter(
            "quantzoo_engine_missing_bars_total",
            "Gaps in the bar sequence, by symbol",
            ["symbol"],
            registry=r,
        )
        self.outlier_prices = Counter(
            "quantzoo_engine_outlier_prices_total",
            "Bars refused as outliers, by symbol",
            ["symbol"],
            registry=r,
        )
        self.kill_switch_engaged = Gauge(
            "quantzoo_engine_kill_switch_engaged", "1 while the kill switch is engaged", registry=r
        )
        self.kill_switch_state_known = Gauge(
            "quantzoo_engine_kill_switch_state_known",
            "1 once the kill-switch state has been read (0 at start and after losing the view of it)",
            registry=r,
        )
        self.trading_state = Gauge(
            "quantzoo_engine_trading_state", "1 for the current trading state", ["state"], registry=r
        )
        self.errors = Counter(
            "quantzoo_engine_errors_total", "Internal and broker errors, by kind", ["kind"], registry=r
        )
        self.heartbeat_timestamp_seconds = Gauge(
            "quantzoo_engine_heartbeat_timestamp_seconds",
            "Unix time of the engine's last loop iteration",
            registry=r,
        )
        self.kill_switch_engage_seconds = Histogram(
            "quantzoo_engine_kill_switch_engage_seconds",
            "Engage command received -> new orders blocked",
            buckets=_ENGAGE_BUCKETS,
            registry=r,
        )
        self.set_trading_state(TradingState.HALTED)
        for kind in ERROR_KINDS:
            self.errors.labels(kind=kind)
        for api in ("broker", "http"):
            # Present from the start, so the runbook's SlowAPI alert and dashboards always see the series.
            self.api_latency_seconds.labels(api=api).set(0)

    def set_trading_state(self, state: TradingState) -> None:
        for candidate in TradingState:
            self.trading_state.labels(state=str(candidate)).set(1 if candidate is state else 0)

    def observe_latency(self, api: str, seconds: float) -> None:
        self.api_latency_seconds.labels(api=api).set(seconds)
        self.api_request_duration_seconds.labels(api=api).observe(seconds)
