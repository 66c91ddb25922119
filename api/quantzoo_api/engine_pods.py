"""Which engine pods a kill is pushed to, the pure part shared by the operator and the safety service.

Every live engine pod of a TradingSystem (Ready or not) is a target, dialled by pod IP: a partitioned or
wedged engine fails its readiness probe, drops out of the Service's endpoints and may still trade
(issue #15, finding 1). No I/O here: callers list the pods through the API server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from quantzoo_api import ENGINE_PORT
from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION

# The labels an engine pod's selector matches on (immutable once a workload exists: keep them stable).
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
SYSTEM_LABEL = "trading.quantzoo.io/system"
APP_NAME = "quantzoo"
ENGINE_COMPONENT = "engine"

REFUSED_BY_POLICY = "outside the permitted push networks"


def engine_pod_selector(system: str) -> str:
    """Label selector (string form) of a TradingSystem's engine pods."""
    return f"{NAME_LABEL}={APP_NAME},{COMPONENT_LABEL}={ENGINE_COMPONENT},{SYSTEM_LABEL}={system}"


@dataclass(frozen=True)
class Target:
    """One engine replica and where its admin endpoint is."""

    pod: str
    uid: str
    endpoint: str
    # In its grace period (deletionTimestamp set): its SIGTERM already stopped new orders, and it may stop
    # answering any moment. Only a deletion's halt dials it (to flatten, when asked), once.
    terminating: bool = False


def endpoint_of(pod: Mapping[str, Any]) -> str | None:
    """The annotation (a real process standing in for a simulated pod) wins; else the pod IP."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if annotations.get(ADMIN_ENDPOINT_ANNOTATION):
        return str(annotations[ADMIN_ENDPOINT_ANNOTATION]).rstrip("/")
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{ENGINE_PORT}"


def permitted(endpoint: str, networks: Iterable[str]) -> bool:
    """Whether a push may dial `endpoint`: any address when no networks are configured, else only an IP
    literal (or localhost) inside one of them -- names are not resolved, so a name cannot smuggle a target."""
    networks = tuple(networks)
    if not networks:
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n) for n in networks)


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_live(pod: Mapping[str, Any], *, terminating: bool = False) -> bool:
    """A pod whose engine may be running: not finished, and not terminating unless `terminating` (a pod in its
    grace period, still Running). Readiness does not matter -- a partitioned or overloaded engine fails its
    probe but may still trade, so it is pushed to as well."""
    phase = (pod.get("status") or {}).get("phase")
    if is_terminating(pod):
        return terminating and phase == "Running"
    return phase in {"Running", "Pending"}


def select_targets(pods: Iterable[Mapping[str, Any]], *, terminating: bool = False) -> list[Target]:
    """Every live engine pod with an endpoint, Ready or not -- each one pushed to directly by pod IP, never
    through the load-balanced Service (which reaches one Ready replica of many). With `terminating`, pods in
    their grace period too (a TradingSystem's deletion: a foreground deletion, Argo CD's default, has the
    garbage collector delete the engine's pods while the finalizer runs)."""
    out = []
    for pod in pods:
        endpoint = endpoint_of(pod)
        if endpoint and is_live(pod, terminating=terminating):
            meta = pod.get("metadata") or {}
            out.append(
                Target(
                    pod=meta.get("name", ""),
                    uid=meta.get("uid", ""),
                    endpoint=endpoint,
                    terminating=is_terminating(pod),
                )
            )
    return sorted(out, key=lambda t: t.pod)
