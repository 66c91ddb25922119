"""Services: the engine's headless Service (the StatefulSet's governing Service: a stable DNS name per
replica), the engine's ClusterIP Service on 8001 (what the safety service calls) and the safety Service
on 8888 (the runbook's API; optionally on a node port, see safety()). The operator itself never pushes
through a Service: it pushes to every replica's own endpoint (pushing.py)."""

from __future__ import annotations

from typing import Any

from quantzoo_api import ENGINE_PORT, SAFETY_PORT
from quantzoo_api.types import ExposeType

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata


def _port(port: int) -> dict[str, Any]:
    return {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}


def engine_headless(system: System) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(system, names.engine_headless(system.name), labels.ENGINE),
        "spec": {
            "clusterIP": "None",
            # The replica's DNS record exists before it is ready: the operator and people can reach a
            # starting (still halted) engine by name.
            "publishNotReadyAddresses": True,
            "selector": labels.selector(system.name, labels.ENGINE),
            "ports": [_port(ENGINE_PORT)],
        },
    }


def engine(system: System) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(system, names.engine(system.name), labels.ENGINE),
        "spec": {
            "type": "ClusterIP",
            "selector": labels.selector(system.name, labels.ENGINE),
            "ports": [_port(ENGINE_PORT)],
        },
    }


def safety(system: System) -> dict[str, Any]:
    """ClusterIP; NodePort or LoadBalancer with spec.safety.expose (still reachable in the cluster by its
    ClusterIP and name). `externalTrafficPolicy: Local` keeps the client's address, which the safety
    NetworkPolicy checks against expose.sourceRanges; it also means only the safety pod's node answers on
    the node port. Dropping expose turns it back into ClusterIP (the API server clears the node port)."""
    expose = system.spec.safety.expose
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": labels.selector(system.name, labels.SAFETY),
        "ports": [_port(SAFETY_PORT)],
    }
    if expose is not None:
        port = _port(SAFETY_PORT)
        if expose.node_port is not None:
            port["nodePort"] = expose.node_port
        spec.update(type=str(expose.type), ports=[port], externalTrafficPolicy="Local")
        if expose.type is ExposeType.LOAD_BALANCER:
            spec["loadBalancerSourceRanges"] = list(expose.source_ranges)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(system, names.safety(system.name), labels.SAFETY),
        "spec": spec,
    }


def build(system: System) -> list[dict[str, Any]]:
    return [engine_headless(system), engine(system), safety(system)]
