"""NetworkPolicies: who may reach the engine and the safety service.

- engine (port 8001: the admin kill-switch endpoint, state, metrics): only this TradingSystem's safety
  pod and the operator's pods (in the operator's namespace when known), plus the monitoring namespaces
  the operator is configured with (Prometheus scrapes /metrics on the same port). Nothing else.
- safety (port 8888: the runbook's API): pods of the same namespace, the operator, monitoring, and
  the CIDRs of spec.safety.expose.sourceRanges (the node port / load balancer path).
Egress stays open: the engine needs its broker and the API server.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from quantzoo_api import ENGINE_PORT, SAFETY_PORT

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import BuildOptions, System, metadata

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def operator_peer(options: BuildOptions) -> dict[str, Any]:
    namespaces: dict[str, Any] = (
        {"matchLabels": {NAMESPACE_NAME_LABEL: options.operator_namespace}}
        if options.operator_namespace
        else {}
    )
    return {
        "namespaceSelector": namespaces,
        "podSelector": {"matchLabels": {labels.NAME: labels.APP_NAME, labels.COMPONENT: labels.OPERATOR}},
    }


def monitoring_peers(options: BuildOptions) -> list[dict[str, Any]]:
    if not options.monitoring_namespaces:
        return []
    return [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": NAMESPACE_NAME_LABEL,
                        "operator": "In",
                        "values": sorted(options.monitoring_namespaces),
                    }
                ]
            }
        }
    ]


def _ingress_only(
    system: System, name: str, component: str, peers: list[dict[str, Any]], port: int
) -> dict[str, Any]:
    """A policy that admits `peers` to `port` of this system's `component` pods and nothing else."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(system, name, labels.NETWORK),
        "spec": {
            "podSelector": {"matchLabels": labels.selector(system.name, component)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": port, "protocol": "TCP"}]}],
        },
    }


def engine(system: System, options: BuildOptions) -> dict[str, Any]:
    safety_pods = {"podSelector": {"matchLabels": labels.selector(system.name, labels.SAFETY)}}
    peers = [safety_pods, operator_peer(options), *monitoring_peers(options)]
    return _ingress_only(system, names.engine(system.name), labels.ENGINE, peers, ENGINE_PORT)


def expose_peers(system: System) -> list[dict[str, Any]]:
    """spec.safety.expose.sourceRanges: who may call the safety API on its node port / load balancer."""
    expose = system.spec.safety.expose
    if expose is None:
        return []
    return [{"ipBlock": {"cidr": str(ipaddress.ip_network(c, strict=False))}} for c in expose.source_ranges]


def safety(system: System, options: BuildOptions) -> dict[str, Any]:
    same_namespace = {"podSelector": {}}
    peers = [same_namespace, operator_peer(options), *monitoring_peers(options), *expose_peers(system)]
    return _ingress_only(system, names.safety(system.name), labels.SAFETY, peers, SAFETY_PORT)


def build(system: System, options: BuildOptions | None = None) -> list[dict[str, Any]]:
    options = options or BuildOptions()
    return [engine(system, options), safety(system, options)]
