"""A real Prometheus (Debian's `prometheus` binary) as a pod in a monitoring namespace of the real node.

Why a pod: the NetworkPolicies admit scrapes from pods in `monitoring.scrapeNamespaces`; traffic from the
host (the node) is not what an in-cluster Prometheus sends, and no policy applies to it. So Prometheus runs
where a Prometheus Operator would run it: a pod in the monitoring namespace, scraping pod addresses with
the scrape jobs the chart's PodMonitors become (podmonitors.py), and evaluating the chart's
PrometheusRule. The binary is the host's (a hostPath mount into the QuantZoo image: both are Debian
bookworm, it needs only libc); no image is pulled.

What this does not model: the Prometheus Operator itself (its config generation is podmonitors.py);
kubernetes_sd (Debian builds Prometheus without it: pods are discovered through http_sd from podsd.py,
which lists them from the API server on the node, with kubernetes_sd's labels); a Prometheus image;
Alertmanager (alerts are read from Prometheus's own /api/v1/alerts); remote storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from hack.devcluster import node, podmonitors

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
PORT = 9090
NAME = "prometheus"
CONFIG_MOUNT = "/etc/prometheus"
MONITORING_API = "monitoring.coreos.com/v1"


def chart_monitoring_objects(
    helm: Path, chart: Path, release: str, namespace: str, *values: str
) -> list[dict]:
    """The chart's PodMonitors and PrometheusRule, rendered as `helm install` would with these values."""
    res = node.run(
        *(str(helm), "template", release, str(chart), "-n", namespace, "--api-versions", MONITORING_API),
        *("--show-only", "templates/podmonitors.yaml", "--show-only", "templates/prometheusrule.yaml"),
        *values,
    )
    return [doc for doc in yaml.safe_load_all(res.stdout) if doc]


def config(monitors: list[dict[str, Any]], discovery_url: str, evaluation_interval: str) -> dict[str, Any]:
    """prometheus.yml: the PodMonitors' scrape jobs and the rule file next to it."""
    return {
        "global": {"evaluation_interval": evaluation_interval},
        "rule_files": [f"{CONFIG_MOUNT}/rules.yml"],
        "scrape_configs": podmonitors.scrape_configs(monitors, discovery_url),
    }


def manifests(
    namespace: str, image: str, objects: list[dict[str, Any]], discovery_url: str, evaluation_interval: str
) -> list[dict]:
    """The config (scrape jobs and rules) and the Prometheus pod."""
    monitors = [o for o in objects if o["kind"] == "PodMonitor"]
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    labels = {"app.kubernetes.io/name": NAME}
    prometheus_yml = config(monitors, discovery_url, evaluation_interval)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": namespace},
            "data": {
                "prometheus.yml": yaml.safe_dump(prometheus_yml, sort_keys=False),
                "rules.yml": yaml.safe_dump(podmonitors.rule_file(rules), sort_keys=False),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": NAME,
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": [
                            "/opt/prometheus/prometheus",
                            f"--config.file={CONFIG_MOUNT}/prometheus.yml",
                            "--storage.tsdb.path=/prometheus",
                            f"--web.listen-address=:{PORT}",
                        ],
                        "ports": [{"name": "web", "containerPort": PORT}],
                        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": PORT}, "periodSeconds": 2},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "binary", "mountPath": "/opt/prometheus/prometheus", "readOnly": True},
                            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                            {"name": "data", "mountPath": "/prometheus"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "binary", "hostPath": {"path": str(PROMETHEUS_BIN), "type": "File"}},
                    {"name": "config", "configMap": {"name": NAME}},
                    {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
                ],
            },
        },
    ]


@dataclass
class PrometheusAPI:
    """Prometheus's HTTP API (the host reaches the pod's address directly, as the kubelet does)."""

    url: str

    def _get(self, path: str, **params: str) -> Any:
        resp = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {json.dumps(body)[:500]}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector result of `expr` (a scalar answers as one series without labels)."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def firing(self) -> dict[str, list[dict[str, str]]]:
        """{alert name: [labels of each firing instance]}."""
        out: dict[str, list[dict[str, str]]] = {}
        for alert in self._get("/api/v1/alerts")["alerts"]:
            if alert["state"] == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return out

    def active_targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", state="active")["activeTargets"]
