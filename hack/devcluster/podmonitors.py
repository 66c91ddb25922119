"""The chart's PodMonitors and PrometheusRule as a plain Prometheus would load them. Pure, no I/O.

A cluster with the Prometheus Operator turns each PodMonitor into a `kubernetes_sd` (role pod) scrape
job; the local cluster has no Prometheus Operator, so this does the same translation for the parts our
chart uses (matchLabels selectors, namespaceSelector, a named port or none, path, interval, timeout,
relabelings), following the operator's generated config: keep the pods whose labels match, keep the
endpoint's port, drop finished pods, label each target with namespace/pod/container/job, then the
monitor's own relabelings. Anything else in a PodMonitor is refused rather than silently ignored.

Debian's Prometheus is built without `kubernetes_sd`, so the jobs discover pods through `http_sd` from a
URL that serves what kubernetes_sd would: `pod_targets()` gives every pod's container ports the same
`__meta_kubernetes_*` labels (podsd.py serves it), and the namespaces kubernetes_sd would be limited to
become a keep on `__meta_kubernetes_namespace`. The relabelings, the part the chart writes, run unchanged.
"""

from __future__ import annotations

import re
from typing import Any

SUPPORTED_ENDPOINT_KEYS = {"port", "path", "interval", "scrapeTimeout", "relabelings"}
# PodMonitor relabeling keys (camelCase) -> Prometheus relabel_config keys.
RELABEL_KEYS = {
    "sourceLabels": "source_labels",
    "separator": "separator",
    "targetLabel": "target_label",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
    "action": "action",
}


class UnsupportedPodMonitor(ValueError):
    pass


def sanitize(label: str) -> str:
    """A Kubernetes label name as kubernetes_sd spells it in `__meta_kubernetes_pod_label_<name>`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _literal(text: str) -> str:
    """`text` as a regex matching itself (RE2's metacharacters escaped; a label value has few)."""
    return re.sub(r"([.*+?()|\[\]{}^$\\])", r"\\\1", text)


def _relabel(item: dict[str, Any]) -> dict[str, Any]:
    unknown = set(item) - set(RELABEL_KEYS)
    if unknown:
        raise UnsupportedPodMonitor(f"relabeling keys not supported: {sorted(unknown)}")
    out = {RELABEL_KEYS[k]: v for k, v in item.items()}
    if "action" in out:
        out["action"] = str(out["action"]).lower()
    return out


def _selector_keeps(selector: dict[str, Any]) -> list[dict[str, Any]]:
    if set(selector) - {"matchLabels"}:
        raise UnsupportedPodMonitor(f"selector keys not supported: {sorted(set(selector) - {'matchLabels'})}")
    keeps = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        name = sanitize(key)
        keeps.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_pod_label_{name}",
                    f"__meta_kubernetes_pod_labelpresent_{name}",
                ],
                "regex": f"({_literal(str(value))});true",
            }
        )
    return keeps


def _namespaces(monitor: dict[str, Any]) -> list[str] | None:
    """The namespaces to discover pods in; None for all."""
    ns_selector = monitor["spec"].get("namespaceSelector") or {}
    if ns_selector.get("any"):
        return None
    return list(ns_selector.get("matchNames") or [monitor["metadata"]["namespace"]])


def scrape_configs(
    monitors: list[dict[str, Any]], discovery_url: str, refresh: str = "5s"
) -> list[dict[str, Any]]:
    """One scrape job per PodMonitor endpoint, named as the Prometheus Operator names them."""
    jobs = []
    for monitor in monitors:
        if monitor.get("kind") != "PodMonitor":
            raise UnsupportedPodMonitor(f"not a PodMonitor: {monitor.get('kind')}")
        meta, spec = monitor["metadata"], monitor["spec"]
        job = f"{meta['namespace']}/{meta['name']}"
        namespaces = _namespaces(monitor)
        in_namespaces = (
            []
            if namespaces is None
            else [
                {
                    "action": "keep",
                    "source_labels": ["__meta_kubernetes_namespace"],
                    "regex": "|".join(_literal(n) for n in namespaces),
                }
            ]
        )
        for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
            unknown = set(endpoint) - SUPPORTED_ENDPOINT_KEYS
            if unknown:
                raise UnsupportedPodMonitor(f"{job}: endpoint keys not supported: {sorted(unknown)}")
            relabel = in_namespaces + _selector_keeps(spec.get("selector") or {})
            if "port" in endpoint:
                relabel.append(
                    {
                        "action": "keep",
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": _literal(endpoint["port"]),
                    }
                )
            relabel += [
                {
                    "action": "drop",
                    "source_labels": ["__meta_kubernetes_pod_phase"],
                    "regex": "(Failed|Succeeded)",
                },
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"target_label": "job", "replacement": job},
                *(_relabel(r) for r in endpoint.get("relabelings") or []),
            ]
            scrape: dict[str, Any] = {
                "job_name": f"podMonitor/{job}/{index}",
                "metrics_path": endpoint.get("path", "/metrics"),
                "http_sd_configs": [{"url": discovery_url, "refresh_interval": refresh}],
                "relabel_configs": relabel,
            }
            if "interval" in endpoint:
                scrape["scrape_interval"] = endpoint["interval"]
            if "scrapeTimeout" in endpoint:
                scrape["scrape_timeout"] = endpoint["scrapeTimeout"]
            jobs.append(scrape)
    return jobs


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """http_sd target groups for Pod objects (API JSON): one per container port, with the labels
    kubernetes_sd's pod role gives it (a container without ports: one target at the pod's address)."""
    groups = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
        ip = status.get("podIP")
        if not ip:
            continue
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), {})
        pod_labels = {
            "__meta_kubernetes_namespace": meta["namespace"],
            "__meta_kubernetes_pod_name": meta["name"],
            "__meta_kubernetes_pod_ip": ip,
            "__meta_kubernetes_pod_uid": meta.get("uid", ""),
            "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
            "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
            "__meta_kubernetes_pod_phase": status.get("phase", ""),
            "__meta_kubernetes_pod_ready": str(ready).lower(),
            "__meta_kubernetes_pod_controller_kind": owner.get("kind", ""),
            "__meta_kubernetes_pod_controller_name": owner.get("name", ""),
        }
        for key, value in (meta.get("labels") or {}).items():
            pod_labels[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
            pod_labels[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
        for container in spec.get("containers") or []:
            base = {
                **pod_labels,
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_init": "false",
            }
            ports = container.get("ports") or []
            if not ports:
                groups.append({"targets": [ip], "labels": base})
            for port in ports:
                number = port["containerPort"]
                labels = {
                    **base,
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    "__meta_kubernetes_pod_container_port_number": str(number),
                    "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
                }
                groups.append({"targets": [f"{ip}:{number}"], "labels": labels})
    return groups


def rule_file(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A Prometheus rule file: the groups of every PrometheusRule's spec."""
    groups = []
    for rule in rules:
        if rule.get("kind") != "PrometheusRule":
            raise UnsupportedPodMonitor(f"not a PrometheusRule: {rule.get('kind')}")
        groups += rule["spec"]["groups"]
    return {"groups": groups}
