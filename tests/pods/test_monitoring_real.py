"""Monitoring on live data, on real pods: a real Prometheus scrapes the engine, safety and operator pods
across their NetworkPolicies, evaluates the runbook's alert rules and ours, and the alerts fire on what
really happens to a TradingSystem.

- Prometheus (Debian's binary) runs as a pod in the `monitoring` namespace, the release's
  `monitoring.scrapeNamespaces` (hack/devcluster/prometheus.py): the NetworkPolicies admit it as they
  would admit an in-cluster Prometheus, and nothing else. Its scrape jobs are the chart's PodMonitors
  translated as the Prometheus Operator would (hack/devcluster/podmonitors.py; pods discovered through
  http_sd from the node, hack/devcluster/podsd.py, as Debian's build has no kubernetes_sd); its rules
  are the chart's PrometheusRule (the runbook's HighDrawdown and SlowAPI, verbatim, and ours),
  unchanged -- `for: 1m` included, so this takes minutes.
- The loss is real: a manual paper order buys AAPL, then the engine's replay feed
  (tests/pods/loss_replay.py) drops AAPL by 40%; when the file ends the feed goes quiet (stale data).
  The engine is stopped by a rollout to an image that is not there (ErrImageNeverPull), as a bad
  deploy would stop it.

What this does not model: the Prometheus Operator, kubernetes_sd, Alertmanager and Grafana (the
dashboards' queries run against Prometheus's API with their variables filled in); the replay file
reaches the engine's /tmp emptyDir from the node (the CRD has no volume for replay data), before or --
if the engine wins the race -- after a first start that fails for want of it.

One TradingSystem of its own in its own namespace; the tests run in file order and share it.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from hack.devcluster import node, podsd, prometheus
from tests.monitoring.test_alerts_and_dashboards import DASHBOARDS, dashboard_queries
from tests.pods import loss_replay, realpods
from tests.pods.realpods import MONITORING_NS, OPERATOR_NS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NS = "monitored"
SYSTEM = "drawdown"
REPLAY_FILE = "bars.csv"
FLAT_STEPS, FALL_STEPS, FALL_PCT = 60, 30, 40.0
POSITION = 300  # AAPL at 190 on 100,000 of cash: -22.8% of the day's equity at the bottom
ALERT_TIMEOUT = 240  # `for: 1m`, plus the condition's own wait (staleness > 60 s), plus scrape lag
RATE_INTERVAL = "5m"  # what Grafana's $__rate_interval becomes here


def kubectl_apply(cluster: node.RealCluster, *docs: dict) -> None:
    cluster.plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def namespace_doc(name: str, restricted: bool) -> dict:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def secret_token(cluster: node.RealCluster, name: str) -> str:
    secret = realpods.kubectl_json(cluster, "-n", NS, "get", "secret", name)
    return base64.b64decode(secret["data"]["token"]).decode()


@pytest.fixture(scope="module")
def prom(release: node.RealCluster) -> Iterator[prometheus.PrometheusAPI]:
    kubectl_apply(release, namespace_doc(MONITORING_NS, restricted=False))
    version = json.loads(release.plane.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    objects = prometheus.chart_monitoring_objects(
        release.plane.bin_dir / "helm",
        node.REPO / "charts" / "quantzoo",
        "quantzoo",
        OPERATOR_NS,
        *("--kube-version", version),
        *("--set", "monitoring.podMonitors.interval=5s", "--set", "monitoring.podMonitors.scrapeTimeout=4s"),
    )
    assert {o["kind"] for o in objects} == {"PodMonitor", "PrometheusRule"}, objects

    def all_pods() -> list[dict]:
        return realpods.kubectl_json(release, "get", "pods", "-A")["items"]

    with podsd.serving(node.NODE_IP, all_pods) as discovery_url:
        docs = prometheus.manifests(MONITORING_NS, release.node.app_image, objects, discovery_url, "5s")
        kubectl_apply(release, *docs)
        try:
            selector = f"app.kubernetes.io/name={prometheus.NAME}"
            pod = realpods.one_ready_pod(release, MONITORING_NS, selector, 120)
            yield prometheus.PrometheusAPI(f"http://{pod['status']['podIP']}:{prometheus.PORT}")
        finally:
            delete(release, docs)


def delete(release: node.RealCluster, docs: list[dict]) -> None:
    for doc in reversed(docs):
        kind, meta = doc["kind"], doc["metadata"]
        release.plane.kubectl(
            "-n", meta["namespace"], "delete", kind, meta["name"], "--ignore-not-found", "--wait=false"
        )


def put_replay_file(cluster: node.RealCluster, csv_text: str, timeout: float = 120) -> None:
    """Write the replay file into the engine pod's /tmp emptyDir from the node, as soon as the kubelet
    has made the directory (an engine that starts before it is there fails, and its restart reads it)."""

    def uid() -> str:
        return realpods.kubectl_json(cluster, "-n", NS, "get", "pod", f"{SYSTEM}-engine-0")["metadata"]["uid"]

    pod_dir = (
        cluster.node.workdir / "kubelet" / "root" / "pods" / realpods.wait_for(uid, timeout, "engine pod")
    )
    tmp = pod_dir / "volumes" / "kubernetes.io~empty-dir" / "tmp"
    realpods.wait_for(tmp.is_dir, timeout, "the engine pod's /tmp emptyDir", interval=0.02)
    target = tmp / REPLAY_FILE
    target.write_text(csv_text)
    target.chmod(0o644)


def order(system: dict[str, str], body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {system['admin_token']}"}
    return httpx.post(f"{system['engine']}/orders", json=body, headers=headers, timeout=10)


def order_past_the_outlier(system: dict[str, str], body: dict) -> httpx.Response:
    """Send an order, again while the replay's MSFT outlier bar is the last price (the engine then refuses
    every MSFT order with 409 outlier_price, for one bar): any other answer is the one the test checks."""

    def answered() -> httpx.Response | None:
        resp = order(system, body)
        refused_outlier = resp.status_code == 409 and "outlier_price" in resp.text
        return None if refused_outlier else resp

    return realpods.wait_for(answered, 30, "an answer not about the MSFT outlier", interval=0.5)


def trade_while_flat(system: dict[str, str]) -> dict[str, httpx.Response]:
    """While AAPL holds still: buy it; rest a MSFT limit order below the market (the halt cancels it);
    send an order over maxOrderNotional (the risk checks refuse it)."""

    def bought() -> httpx.Response | None:
        resp = order(system, {"symbol": "AAPL", "side": "buy", "quantity": POSITION})
        return resp if resp.status_code == 201 else None

    return {
        "bought": realpods.wait_for(bought, 45, "the AAPL buy accepted", interval=1),
        "resting": order_past_the_outlier(
            system, {"symbol": "MSFT", "side": "buy", "quantity": 10, "type": "limit", "limit_price": 400.0}
        ),
        "refused": order_past_the_outlier(system, {"symbol": "MSFT", "side": "buy", "quantity": 1000}),
    }


@pytest.fixture(scope="module")
def system(release: node.RealCluster, prom: prometheus.PrometheusAPI) -> Iterator[dict]:
    """The TradingSystem on the scripted market; returns the engine's and safety's URLs and tokens."""
    kubectl_apply(release, namespace_doc(NS, restricted=True))
    image = {"image": release.node.app_image, "imagePullPolicy": "Never"}
    ts = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": SYSTEM, "namespace": NS},
        "spec": {
            "symbols": ["AAPL", "MSFT"],
            "strategy": {"name": "noop"},
            "broker": {"initialCash": 100000},
            "marketData": {"kind": "replay", "replayPath": f"/tmp/{REPLAY_FILE}", "intervalSeconds": 1},
            # The drawdown limit above the loss: the watchdog's trip is then the stale feed's, not the
            # loss's (the loss is for the alert to see).
            "risk": {"maxDailyDrawdownPct": 50},
            "engine": image,
            "safety": image,
        },
    }
    kubectl_apply(release, ts)
    try:
        put_replay_file(release, loss_replay.falling_market(FLAT_STEPS, FALL_STEPS, FALL_PCT))
        selector = f"trading.quantzoo.io/system={SYSTEM},app.kubernetes.io/component="
        pods = {c: realpods.one_ready_pod(release, NS, selector + c, 240) for c in ("engine", "safety")}
        urls = {
            "engine": f"http://{pods['engine']['status']['podIP']}:8001",
            "safety": f"http://{pods['safety']['status']['podIP']}:8888",
            "admin_token": secret_token(release, f"{SYSTEM}-engine-admin"),
            "safety_token": secret_token(release, f"{SYSTEM}-safety-token"),
        }
        yield {**urls, "orders": trade_while_flat(urls)}
    finally:
        # Deleted while the operator runs, so its finalizer lets the namespace go.
        release.plane.kubectl(
            "-n", NS, "delete", "ts", SYSTEM, "--ignore-not-found", "--timeout=90s", check=False
        )
        release.plane.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def wait_firing(prom: prometheus.PrometheusAPI, alert: str, timeout: float = ALERT_TIMEOUT) -> dict[str, str]:
    def ours() -> dict[str, str] | None:
        found = [a for a in prom.firing().get(alert, []) if a.get("tradingsystem") == SYSTEM]
        return found[0] if found else None

    return realpods.wait_for(ours, timeout, f"{alert} firing for {NS}/{SYSTEM}", interval=2)


def test_prometheus_scrapes_every_pod_through_the_network_policies(release, prom, system):
    """Prometheus's pod is in the namespace the release lets scrape, and every target is up: the
    engine's and safety's NetworkPolicies admit it (a pod elsewhere is refused: test_real_pods.py)."""

    def all_up() -> list[dict] | None:
        targets = [t for t in prom.active_targets() if t["labels"].get("namespace") in (NS, OPERATOR_NS)]
        components = {t["labels"].get("component") for t in targets if t["health"] == "up"}
        return targets if components >= {"engine", "safety", "operator"} else None

    targets = realpods.wait_for(all_up, 60, "engine, safety and operator targets up", interval=2)
    ours = [t for t in targets if t["labels"]["namespace"] == NS]
    assert {t["labels"]["component"] for t in ours} == {"engine", "safety"}, ours
    assert all(t["labels"]["tradingsystem"] == SYSTEM and t["health"] == "up" for t in ours), ours
    assert prom.query(f'quantzoo_engine_equity{{namespace="{NS}", tradingsystem="{SYSTEM}"}}')


def test_high_drawdown_fires_when_a_scripted_loss_crosses_minus_ten_percent(prom, system):
    orders = system["orders"]
    assert orders["bought"].json()["symbol"] == "AAPL", orders["bought"].text
    assert orders["resting"].status_code == 201, orders["resting"].text
    assert orders["refused"].status_code == 422, orders["refused"].text  # maxOrderNotional

    alert = wait_firing(prom, "HighDrawdown")
    assert alert["severity"] == "critical", alert
    assert alert["namespace"] == NS, alert
    [pnl] = prom.query(f'unrealized_pnl_pct{{namespace="{NS}", tradingsystem="{SYSTEM}"}}')
    assert float(pnl["value"][1]) < -10, pnl


def test_data_stale_fires_when_the_feed_stops(prom, system):
    alert = wait_firing(prom, "DataStale")
    assert alert["symbol"] in ("AAPL", "MSFT"), alert
    # The watchdog tripped the kill switch on the stale feed: KillSwitchEngaged fires (it has no `for`).
    wait_firing(prom, "KillSwitchEngaged", timeout=60)
    # The runbook's release, and a call with a wrong token, so the dashboards' panels for them have data.
    headers = {"Authorization": f"Bearer {system['safety_token']}"}
    body = {"operator": "monitoring test", "reason": "feed checked"}
    released = httpx.post(
        f"{system['safety']}/kill-switch/deactivate", json=body, headers=headers, timeout=30
    )
    assert released.status_code == 200, released.text
    wrong = httpx.get(
        f"{system['safety']}/test/safety-check", headers={"Authorization": "Bearer no"}, timeout=10
    )
    assert wrong.status_code == 401


def fill_variables(query: str) -> str:
    """A dashboard query as Grafana sends it for this TradingSystem."""
    query = query.replace("$__rate_interval", RATE_INTERVAL)
    query = query.replace("$namespace", NS).replace("$tradingsystem", SYSTEM)
    return query


def as_promql(query: str) -> tuple[str, str | None]:
    """A Grafana `label_values(metric, label)` variable -> (the metric selector, the label it lists)."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    return (match.group(1), match.group(2)) if match else (query, None)


def test_every_dashboard_query_returns_series(prom, system):
    time.sleep(12)  # two scrapes after the release and the refused call
    empty = []
    for path in DASHBOARDS:
        for where, query in dashboard_queries(json.loads(path.read_text())):
            expr, label = as_promql(fill_variables(query))
            result = prom.query(expr)
            if not result or (label and not any(label in r["metric"] for r in result)):
                empty.append(f"{path.name}: {where}: {expr}")
    assert not empty, "\n".join(empty)


def test_engine_down_fires_when_the_engine_is_stopped(release, prom, system):
    """A rollout to an image that is not on the node: the engine's pod is replaced by one that cannot
    start; the safety service reports the engine unreachable and EngineDown fires."""
    patch = {"spec": {"engine": {"image": "quantzoo/not-there:0", "imagePullPolicy": "Never"}}}
    release.plane.kubectl("-n", NS, "patch", "ts", SYSTEM, "--type=merge", "-p", json.dumps(patch))
    alert = wait_firing(prom, "EngineDown")
    assert alert["severity"] == "critical", alert
    [up] = prom.query(f'quantzoo_safety_engine_up{{namespace="{NS}", tradingsystem="{SYSTEM}"}}')
    assert up["value"][1] == "0", up
