"""Fixtures for the monitoring tests: the real promtool, the metrics contract and a PromQL name extractor.

promtool comes from Debian's `prometheus` package (`apt-get install -y prometheus`; do not start the server).
Without it the promtool tests skip with the reason, unless CI is set: under CI a missing promtool fails.
"""

from __future__ import annotations

import shutil

import pytest

from tests.monitoring.promql import allowed_series_names, documented_metrics, in_ci, metric_names


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        message = "promtool is not installed (apt-get install -y prometheus ships it)"
        if in_ci():
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def metrics_contract() -> dict[str, tuple[str, str]]:
    """{metric name: (service section, type)} from the tables of docs/metrics.md."""
    return documented_metrics()


@pytest.fixture(scope="session")
def allowed_names(metrics_contract) -> dict[str, str]:
    """Every series name a query may use -> the documented metric it belongs to."""
    return allowed_series_names(metrics_contract)


@pytest.fixture(scope="session")
def extract_names():
    """metric_names(expr) -> the metric names a PromQL expression or Grafana query selects."""
    return metric_names
