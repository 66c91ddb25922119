"""The safety service's Prometheus metrics, declared once (names fixed in docs/metrics.md, Safety section).

Each app instance owns its own CollectorRegistry, so tests and several apps in one process never share
counters; `/metrics` serves exactly this registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

AUTO_TRIP_REASONS = ("heartbeat", "drawdown", "stale_data", "reject_spike", "error_burst")


class SafetyMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.kill_switch_engaged = Gauge(
            "quantzoo_safety_kill_switch_engaged",
            "1 while the TradingSystem's kill switch is engaged (as last seen)",
            registry=r,
        )
        self.activations = Counter(
            "quantzoo_safety_kill_switch_activations",
            "Kill-switch activations that engaged the switch, by source (api, auto)",
            ["source"],
            registry=r,
        )
        self.deactivations = Counter(
            "quantzoo_safety_kill_switch_deactivations", "Explicit releases of the kill switch", registry=r
        )
        self.auto_trips = Counter(
            "quantzoo_safety_auto_trips",
            "Automatic trips of the kill switch, by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "quantzoo_safety_requests",
            "API calls, by endpoint and HTTP code",
            ["endpoint", "code"],
            registry=r,
        )
        self.auth_failures = Counter("quantzoo_safety_auth_failures", "Refused bearer tokens", registry=r)
        self.engine_up = Gauge(
            "quantzoo_safety_engine_up", "1 when the last engine check answered", registry=r
        )
        self.apiserver_up = Gauge(
            "quantzoo_safety_apiserver_up", "1 when the last Kubernetes API call answered", registry=r
        )
        self.direct_halts = Counter(
            "quantzoo_safety_direct_halts", "Halts pushed straight to the engine and acknowledged", registry=r
        )
        self.activate_duration = Histogram(
            "quantzoo_safety_activate_duration_seconds",
            "Activation call received -> answered (CR patched and/or engine halted)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.watchdog_last_check = Gauge(
            "quantzoo_safety_watchdog_last_check_timestamp_seconds",
            "Unix time of the watchdog's last completed check (a stale value means the watchdog is stuck)",
            registry=r,
        )
        self.pending_engage = Gauge(
            "quantzoo_safety_kill_switch_pending_patch",
            "1 while an engagement made directly on the engine is not yet recorded in the TradingSystem",
            registry=r,
        )
        # Pre-create the labelled series so dashboards and alerts see zeros, not absent series.
        for source in ("api", "auto"):
            self.activations.labels(source=source)
        for reason in AUTO_TRIP_REASONS:
            self.auto_trips.labels(reason=reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
