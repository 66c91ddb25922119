"""The operator's Prometheus metrics (docs/metrics.md, Operator section), in a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

PROPAGATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconcile_total = Counter(
            "quantzoo_operator_reconcile_total", "Handler runs.", ["handler"], registry=self.registry
        )
        self.reconcile_errors = Counter(
            "quantzoo_operator_reconcile_errors_total",
            "Handler failures.",
            ["handler"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "quantzoo_operator_reconcile_duration_seconds",
            "Handler duration.",
            ["handler"],
            registry=self.registry,
        )
        self.propagation_seconds = Histogram(
            "quantzoo_operator_kill_switch_propagation_seconds",
            "Kill-switch spec change seen -> every engine replica acknowledged.",
            buckets=PROPAGATION_BUCKETS,
            registry=self.registry,
        )
        self.unacknowledged = Gauge(
            "quantzoo_operator_kill_switch_unacknowledged",
            "TradingSystems whose kill switch some engine replica has not acknowledged.",
            registry=self.registry,
        )
        self.managed = Gauge(
            "quantzoo_operator_managed_tradingsystems", "TradingSystems seen.", registry=self.registry
        )

    def instrument(self, handler: str) -> Callable[[F], F]:
        """Count, time and count failures of an async handler."""

        def decorator(fn: F) -> F:
            # The handler's series exist at 0 before its first run (an error rate reads 0, not "no data").
            self.reconcile_total.labels(handler)
            self.reconcile_errors.labels(handler)

            @wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.reconcile_total.labels(handler).inc()
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                except Exception:
                    self.reconcile_errors.labels(handler).inc()
                    raise
                finally:
                    self.reconcile_duration.labels(handler).observe(time.perf_counter() - started)

            return wrapper  # type: ignore[return-value]

        return decorator

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = OperatorMetrics()
"""The process-wide instance (handlers are decorated at import time)."""
