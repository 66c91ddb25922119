"""Alert rules (checked and unit-tested with the real promtool) and the Grafana dashboards.

Every metric an alert or a dashboard panel names must be in docs/metrics.md, the metrics contract the
services export (their own tests check /metrics against it).
"""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "prometheus_alerts.yml"
PROMTOOL_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))

REQUIRED_ALERTS = {
    "HighDrawdown", "SlowAPI", "KillSwitchEngaged", "EngineDown", "DataStale", "OrderRejectSpike",
    "OperatorDown", "OperatorReconcileErrors",
}  # fmt: skip
RUNBOOK_DASHBOARDS = ["System Overview", "Trading Performance", "Risk Metrics", "Data Quality"]
# runbook.md, "Key Metrics to Monitor": API response time; position count, total exposure, unrealized P&L,
# daily drawdown, order fill rate, rejected orders; last price update, missing bars, outlier prices,
# data staleness. Plus the kill switch and the operator.
RUNBOOK_KEY_METRICS = {
    "api_latency_seconds", "quantzoo_engine_api_request_duration_seconds", "quantzoo_engine_positions",
    "quantzoo_engine_gross_exposure", "unrealized_pnl_pct", "quantzoo_engine_unrealized_pnl",
    "quantzoo_engine_daily_drawdown_pct", "quantzoo_engine_orders_filled_total",
    "quantzoo_engine_orders_submitted_total", "quantzoo_engine_orders_rejected_total",
    "quantzoo_engine_data_staleness_seconds", "quantzoo_engine_missing_bars_total",
    "quantzoo_engine_outlier_prices_total", "quantzoo_engine_kill_switch_engaged",
    "quantzoo_safety_kill_switch_engaged", "quantzoo_operator_kill_switch_unacknowledged",
    "quantzoo_operator_reconcile_errors_total",
}  # fmt: skip


def alert_rules() -> dict[str, dict]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def dashboard_queries(board: dict) -> list[tuple[str, str]]:
    """(where, query) for every panel target and every templating query of a dashboard."""
    queries = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                queries.append((f"panel {p['title']!r} target {t['refId']}", t["expr"]))
            walk(p.get("panels", []))

    walk(board["panels"])
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            queries.append((f"variable {var['name']}", q))
    return queries


# ---------------------------------------------------------------- promtool


def test_promtool_check_rules(promtool):
    proc = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=[p.name for p in PROMTOOL_TESTS])
def test_promtool_test_rules(promtool, test_file):
    proc = subprocess.run(
        [promtool, "test", "rules", test_file.name],
        cwd=test_file.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_would_catch_a_wrong_expectation(promtool, tmp_path):
    """The unit tests are not vacuous: the same test with a wrong threshold expectation fails."""
    doc = yaml.safe_load((MONITORING / "tests" / "runbook_alerts_test.yml").read_text())
    doc["rule_files"] = [str(RULES)]
    first = doc["tests"][0]["alert_rule_test"][1]
    first["exp_alerts"] = []  # claim HighDrawdown stays quiet on a sustained -12%
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [promtool, "test", "rules", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "HighDrawdown" in proc.stdout + proc.stderr


def test_every_alert_is_tested_in_both_directions():
    fires, quiet = set(), set()
    for path in PROMTOOL_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../prometheus_alerts.yml"], path.name
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    rules = set(alert_rules())
    assert rules - fires == set(), "alerts never shown to fire"
    assert rules - quiet == set(), "alerts never shown to stay quiet"


# ---------------------------------------------------------------- the rules themselves


def test_runbook_alerts_verbatim():
    rules = alert_rules()
    assert rules["HighDrawdown"]["expr"] == "unrealized_pnl_pct < -10"
    assert rules["HighDrawdown"]["for"] == "1m"
    assert rules["HighDrawdown"]["annotations"]["summary"] == "Drawdown exceeds 10%"
    assert rules["SlowAPI"]["expr"] == "api_latency_seconds > 1"
    assert rules["SlowAPI"]["for"] == "5m"
    assert rules["SlowAPI"]["annotations"]["summary"] == "API latency exceeds 1s"
    doc = yaml.safe_load(RULES.read_text())
    assert doc["groups"][0]["name"] == "quantzoo_alerts"
    assert [r["alert"] for r in doc["groups"][0]["rules"]] == ["HighDrawdown", "SlowAPI"]


def test_required_alerts_present_with_severity_and_summary():
    rules = alert_rules()
    assert rules.keys() >= REQUIRED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


# ---------------------------------------------------------------- metric names


def test_metric_name_extractor(extract_names):
    metric_names = extract_names
    assert metric_names("unrealized_pnl_pct < -10") == {"unrealized_pnl_pct"}
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, api) (rate(x_seconds_bucket{api="broker", a=~"$ns"}[5m])))'
    ) == {"x_seconds_bucket"}
    assert metric_names(
        "max by (namespace) (a) == 0 or max by (ns) (time() - b{x='y'}) > 30 unless on (pod) c offset 5m"
    ) == {"a", "b", "c"}
    assert metric_names('label_values(quantzoo_engine_equity{namespace=~"$namespace"}, tradingsystem)') == {
        "quantzoo_engine_equity"
    }
    assert metric_names("sum(rate(foo_total[$__rate_interval])) * 60 > bool 10") == {"foo_total"}
    assert metric_names('absent(up{job="x"})') == {"up"}


def test_metrics_contract_parses(metrics_contract):
    metrics = metrics_contract
    assert {"unrealized_pnl_pct", "api_latency_seconds", "quantzoo_safety_engine_up",
            "quantzoo_operator_reconcile_errors_total"} <= metrics.keys()  # fmt: skip
    assert {section for section, _ in metrics.values()} == {"engine", "safety", "operator"}
    assert len(metrics) >= 35


def test_alerts_name_only_documented_metrics(allowed_names, extract_names):
    allowed = allowed_names
    for name, rule in alert_rules().items():
        used = extract_names(rule["expr"])
        assert used, f"{name}: no metric found in {rule['expr']!r}"
        assert used <= allowed.keys(), f"{name} names undocumented metrics {used - allowed.keys()}"


def test_dashboards_name_only_documented_metrics(allowed_names, extract_names):
    allowed = allowed_names
    used_anywhere = set()
    for path in DASHBOARDS:
        for where, query in dashboard_queries(json.loads(path.read_text())):
            used = extract_names(query)
            assert used, f"{path.name} {where}: no metric in {query!r}"
            assert used <= allowed.keys(), f"{path.name} {where} names undocumented {used - allowed.keys()}"
            used_anywhere |= {allowed[u] for u in used}
    # The runbook's "Key Metrics to Monitor" are all on a dashboard.
    assert used_anywhere >= RUNBOOK_KEY_METRICS, (
        f"not on any dashboard: {RUNBOOK_KEY_METRICS - used_anywhere}"
    )


# ---------------------------------------------------------------- dashboards


def test_the_four_runbook_dashboards():
    boards = [json.loads(p.read_text()) for p in DASHBOARDS]
    assert sorted(b["title"] for b in boards) == sorted(f"QuantZoo / {t}" for t in RUNBOOK_DASHBOARDS)
    assert len({b["uid"] for b in boards}) == 4
    for board in boards:
        assert "quantzoo" in board["tags"]
        assert board["schemaVersion"] >= 36
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["title"]
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0, (board["title"], panel["title"])
            assert pos["x"] + pos["w"] <= 24, (board["title"], panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], (board["title"], panel["title"])
            for target in panel["targets"]:
                assert target["expr"].strip()


def test_panels_do_not_overlap():
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        cells = {}
        for panel in board["panels"]:
            g = panel["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{path.name}: {panel['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = panel["title"]


# ---------------------------------------------------------------- against the services' own registries

SERVICE_MODULES = {"engine": "quantzoo_engine.metrics", "safety": "quantzoo_safety.metrics",
                   "operator": "quantzoo_operator.metrics"}  # fmt: skip


def _exported_series(module_name: str) -> set[str] | None:
    """Series names the service's metrics module declares, or None when it is not importable yet.

    Looks for CollectorRegistry objects at module level, or on an instance of a class of the module that
    builds its own registry without arguments (e.g. SafetyMetrics().registry).
    """
    try:
        from prometheus_client import CollectorRegistry

        module = importlib.import_module(module_name)
    except ImportError:
        return None
    registries = [v for v in vars(module).values() if isinstance(v, CollectorRegistry)]
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__:
            try:
                instance = value()
            except Exception:  # noqa: S112 - a class that needs arguments is not a metrics holder
                continue
            registries += [v for v in vars(instance).values() if isinstance(v, CollectorRegistry)]
    if not registries:
        return None
    names = set()
    for registry in registries:
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names |= {family.name + s for s in ("", "_bucket", "_sum", "_count")}
            else:
                names.add(family.name)
    return names


@pytest.mark.parametrize("service", sorted(SERVICE_MODULES))
def test_alerts_and_dashboards_match_the_service_registry(
    service, metrics_contract, allowed_names, extract_names
):
    exported = _exported_series(SERVICE_MODULES[service])
    assert exported is not None, f"{SERVICE_MODULES[service]} declares no CollectorRegistry"
    documented = {n for n, (section, _) in metrics_contract.items() if section == service}
    allowed = allowed_names
    used = set()
    for rule in alert_rules().values():
        used |= {allowed[n] for n in extract_names(rule["expr"]) if n in allowed}
    for path in DASHBOARDS:
        for _, query in dashboard_queries(json.loads(path.read_text())):
            used |= {allowed[n] for n in extract_names(query) if n in allowed}
    assert exported & documented, f"found no documented {service} metric in {SERVICE_MODULES[service]}"
    missing = (used & documented) - exported
    assert not missing, f"{service} does not export {sorted(missing)} that alerts/dashboards use"
