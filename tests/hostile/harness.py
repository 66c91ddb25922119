"""The hostile-input tests' harness: namespaces of their own, the operator's reconcile counters, and a scan of
everything written for a secret's value (the fixtures are in conftest.py)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass

from kubernetes import client

from tests.operator.harness import OperatorProcess

CREDENTIALS_SECRET = "alpaca-creds"


def new_namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # pods need the `default` ServiceAccount
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException:
            time.sleep(0.1)
    return name


@dataclass(frozen=True)
class Namespaces:
    hostile: str
    other: str
    other_secret_values: tuple[str, ...]
    """Values of the Secret in `other`: they must appear nowhere the operator writes."""


# -- metrics ---------------------------------------------------------------------------------------
_SAMPLE = re.compile(r'^(quantzoo_operator_reconcile(?:_errors)?_total)\{handler="([a-z_]+)"\} ([0-9.e+]+)$')


def reconcile_counters(op: OperatorProcess) -> dict[str, float]:
    """`{"reconcile_total/reconcile": n, "reconcile_errors_total/reconcile": m, ...}` from /metrics."""
    out: dict[str, float] = {}
    for line in op.metrics().splitlines():
        match = _SAMPLE.match(line)
        if match:
            metric, handler, value = match.groups()
            out[f"{metric.removeprefix('quantzoo_operator_')}/{handler}"] = float(value)
    return out


# -- leaks -----------------------------------------------------------------------------------------
def everything_written(api: client.ApiClient, namespace: str) -> str:
    """JSON of every object the operator may have written in `namespace` (TradingSystems with status,
    Events, workloads, pods, ConfigMaps, Services), to search for leaked values."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    parts = [
        custom.list_namespaced_custom_object("trading.quantzoo.io", "v1alpha1", namespace, "tradingsystems"),
        core.list_namespaced_event(namespace).to_dict(),
        core.list_namespaced_pod(namespace).to_dict(),
        core.list_namespaced_config_map(namespace).to_dict(),
        core.list_namespaced_service(namespace).to_dict(),
        apps.list_namespaced_stateful_set(namespace).to_dict(),
        apps.list_namespaced_deployment(namespace).to_dict(),
    ]
    return json.dumps(parts, default=str)


def secret_value_forms(value: str) -> list[str]:
    """A value as it could leak: plain or base64 (as in a Secret's data)."""
    return [value, base64.b64encode(value.encode()).decode()]
