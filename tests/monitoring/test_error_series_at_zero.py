"""The error counters the dashboards and alerts read exist at 0 before the first error, as the
prometheus-client docs advise for labelled metrics: otherwise "errors per second" panels show no data
(rather than 0) on a healthy system, and the real-pod monitoring test's every-query-returns-series fails.
No cluster; milliseconds."""

from __future__ import annotations

from prometheus_client import generate_latest
from quantzoo_engine.metrics import ERROR_KINDS, EngineMetrics
from quantzoo_operator.metrics import OperatorMetrics


def test_engine_errors_exist_for_every_kind_before_any_error():
    text = generate_latest(EngineMetrics().registry).decode()
    for kind in ERROR_KINDS:
        assert f'quantzoo_engine_errors_total{{kind="{kind}"}} 0.0' in text


def test_operator_reconcile_errors_exist_for_an_instrumented_handler_before_it_runs():
    metrics = OperatorMetrics()

    @metrics.instrument("reconcile")
    async def handler() -> None:
        return None

    text = metrics.exposition().decode()
    assert 'quantzoo_operator_reconcile_errors_total{handler="reconcile"} 0.0' in text
    assert 'quantzoo_operator_reconcile_total{handler="reconcile"} 0.0' in text
