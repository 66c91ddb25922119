"""The PodMonitor -> scrape job translation (hack/devcluster/podmonitors.py) and the Prometheus config the
real-pod monitoring test runs (hack/devcluster/prometheus.py), checked by the real promtool. No cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from hack.devcluster import podmonitors, prometheus

ENGINE_MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PodMonitor",
    "metadata": {"name": "quantzoo-engine", "namespace": "quantzoo-system"},
    "spec": {
        "selector": {
            "matchLabels": {"app.kubernetes.io/name": "quantzoo", "app.kubernetes.io/component": "engine"}
        },
        "namespaceSelector": {"any": True},
        "podMetricsEndpoints": [
            {
                "path": "/metrics",
                "interval": "5s",
                "scrapeTimeout": "4s",
                "relabelings": [
                    {
                        "sourceLabels": ["__meta_kubernetes_pod_container_port_number"],
                        "regex": "8001",
                        "action": "keep",
                    },
                    {
                        "sourceLabels": ["__meta_kubernetes_pod_label_trading_quantzoo_io_system"],
                        "targetLabel": "tradingsystem",
                    },
                ],
            }
        ],
    },
}
OPERATOR_MONITOR = {
    "kind": "PodMonitor",
    "metadata": {"name": "quantzoo-operator", "namespace": "quantzoo-system"},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
        "namespaceSelector": {"matchNames": ["quantzoo-system"]},
        "podMetricsEndpoints": [{"port": "http", "path": "/metrics"}],
    },
}
URL = "http://10.245.0.1:4000/pods"
RULE = {
    "kind": "PrometheusRule",
    "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
}


def test_a_podmonitor_becomes_a_job_keeping_only_its_pods():
    [job] = podmonitors.scrape_configs([ENGINE_MONITOR], URL)
    assert job["job_name"] == "podMonitor/quantzoo-system/quantzoo-engine/0"
    assert job["http_sd_configs"] == [{"url": URL, "refresh_interval": "5s"}]
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert not any("__meta_kubernetes_namespace" in r["source_labels"] for r in keeps)  # any namespace
    assert (job["metrics_path"], job["scrape_interval"], job["scrape_timeout"]) == ("/metrics", "5s", "4s")
    assert keeps[:2] == [
        {
            "action": "keep",
            "source_labels": [
                "__meta_kubernetes_pod_label_app_kubernetes_io_component",
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_component",
            ],
            "regex": "(engine);true",
        },
        {
            "action": "keep",
            "source_labels": [
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
            ],
            "regex": "(quantzoo);true",
        },
    ]
    # The monitor's own relabelings come last, in Prometheus's spelling.
    assert job["relabel_configs"][-1] == {
        "source_labels": ["__meta_kubernetes_pod_label_trading_quantzoo_io_system"],
        "target_label": "tradingsystem",
    }
    assert {"target_label": "job", "replacement": "quantzoo-system/quantzoo-engine"} in job["relabel_configs"]


def test_a_named_port_and_listed_namespaces():
    [job] = podmonitors.scrape_configs([OPERATOR_MONITOR], URL)
    assert job["relabel_configs"][0] == {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_namespace"],
        "regex": "quantzoo-system",
    }
    assert {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": "http",
    } in job["relabel_configs"]
    assert "scrape_interval" not in job  # Prometheus's global default


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["spec"]["selector"].update(matchExpressions=[]), "selector keys"),
        (lambda m: m["spec"]["podMetricsEndpoints"][0].update(honorLabels=True), "endpoint keys"),
        (lambda m: m["spec"]["podMetricsEndpoints"][0]["relabelings"][0].update(foo=1), "relabeling keys"),
    ],
)
def test_what_is_not_translated_is_refused(change, message):
    monitor = yaml.safe_load(yaml.safe_dump(ENGINE_MONITOR))
    change(monitor)
    with pytest.raises(podmonitors.UnsupportedPodMonitor, match=message):
        podmonitors.scrape_configs([monitor], URL)


POD = {
    "metadata": {
        "name": "demo-engine-0",
        "namespace": "trading",
        "uid": "u1",
        "labels": {"app.kubernetes.io/component": "engine", "trading.quantzoo.io/system": "demo"},
        "ownerReferences": [{"kind": "StatefulSet", "name": "demo-engine", "controller": True}],
    },
    "spec": {
        "nodeName": "node0",
        "containers": [
            {"name": "engine", "ports": [{"name": "http", "containerPort": 8001, "protocol": "TCP"}]},
            {"name": "sidecar"},
        ],
    },
    "status": {
        "podIP": "10.244.0.7",
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def test_pod_targets_carry_kubernetes_sds_pod_labels():
    port, no_port = podmonitors.pod_targets([POD, {**POD, "status": {"phase": "Pending"}}])  # no IP: none
    assert port["targets"] == ["10.244.0.7:8001"]
    assert no_port["targets"] == ["10.244.0.7"]
    labels = port["labels"]
    assert labels["__meta_kubernetes_pod_label_trading_quantzoo_io_system"] == "demo"
    assert labels["__meta_kubernetes_pod_labelpresent_app_kubernetes_io_component"] == "true"
    assert labels["__meta_kubernetes_pod_container_port_number"] == "8001"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "http"
    assert labels["__meta_kubernetes_namespace"] == "trading"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_controller_kind"] == "StatefulSet"
    assert "__meta_kubernetes_pod_container_port_number" not in no_port["labels"]


def test_the_rule_file_holds_every_prometheusrules_groups():
    assert podmonitors.rule_file([RULE, RULE]) == {"groups": RULE["spec"]["groups"] * 2}


def test_promtool_accepts_the_config_and_rules(promtool, tmp_path: Path):
    docs = prometheus.manifests("monitoring", "img", [ENGINE_MONITOR, OPERATOR_MONITOR, RULE], URL, "5s")
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    conf = yaml.safe_load(config_map["data"]["prometheus.yml"])
    conf["rule_files"] = [str(tmp_path / "rules.yml")]  # where the pod mounts it, here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(conf))
    proc = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rules found" in proc.stdout
