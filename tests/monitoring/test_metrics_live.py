"""Every series an alert rule or a dashboard panel names is on a running service's /metrics.

The registry check in test_alerts_and_dashboards.py reads the metrics modules; this one scrapes the real
processes: the operator, and the engine and safety pods it created, run as their pods would run them.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quantzoo_api import GROUP, PLURAL, VERSION

from hack.devcluster.podrunner import PodRunner, wait_for
from hack.devcluster.stack import TradingSystemStack, start_operator
from tests.monitoring.promql import metric_names
from tests.monitoring.test_alerts_and_dashboards import DASHBOARDS, alert_rules, dashboard_queries

pytestmark = pytest.mark.slow

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exposed_series(text: str) -> set[str]:
    """Series names a /metrics page exposes, including families that have no sample yet (labelled
    counters appear with HELP/TYPE only until their first increment)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_exposed_series_reads_families_without_samples() -> None:
    text = (
        "# HELP x_rejected_total Rejections.\n# TYPE x_rejected_total counter\n"
        "# HELP x_seconds Latency.\n# TYPE x_seconds histogram\n"
        'x_seconds_bucket{le="+Inf"} 1.0\nx_seconds_count 1.0\nx_seconds_sum 0.1\n'
    )
    assert {"x_rejected_total", "x_seconds_bucket", "x_seconds_sum"} <= exposed_series(text)
    assert "x_other" not in exposed_series(text)


def used_series() -> dict[str, str]:
    """{series name: where it is used} over every alert rule and every dashboard query."""
    used: dict[str, str] = {}
    for name, rule in alert_rules().items():
        for series in metric_names(rule["expr"]):
            used.setdefault(series, f"alert {name}")
    for path in DASHBOARDS:
        for where, query in dashboard_queries(json.loads(path.read_text())):
            for series in metric_names(query):
                used.setdefault(series, f"{path.name}: {where}")
    return used


def test_alerts_and_dashboards_name_only_series_the_running_services_expose(cluster, kube_api, namespace):
    operator = start_operator(cluster.kubeconfig, [namespace])
    runner = PodRunner(cluster.plane, cluster.kubeconfig, kube_api)
    try:
        stack = TradingSystemStack(kube_api, runner, namespace, f"ts-{uuid.uuid4().hex[:6]}")
        stack.create({"symbols": ["AAPL"], "marketData": {"kind": "simulated", "intervalSeconds": 0.05}})
        stack.run_engine()
        stack.run_safety()
        wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
        pages = {
            "operator": f"http://127.0.0.1:{operator.port}/metrics",
            "engine": stack.engine.url + "/metrics",
            "safety": stack.safety.url + "/metrics",
        }
        exposed: set[str] = set()
        for service, url in pages.items():
            resp = httpx.get(url, timeout=5)
            assert resp.status_code == 200, f"{service}: {resp.status_code}"
            series = exposed_series(resp.text)
            assert series, f"{service} exposes nothing"
            exposed |= series
    finally:
        runner.stop_all()
        # Deleted while the operator still runs, so its finalizer does not hold the namespace.
        with contextlib.suppress(Exception):
            stack.crs.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, stack.name)
            wait_for(
                lambda: (
                    not stack.crs.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
                ),
                timeout=30,
                what="TradingSystem gone",
            )
        operator.stop()
    used = used_series()
    missing = {name: where for name, where in used.items() if name not in exposed}
    assert not missing, f"used but exposed by no running service: {missing}"
    assert len(used) >= 15  # the extractor found the rules' and panels' series, not nothing
