"""Fixtures of the hostile-input suite: one namespace and ONE operator process per module (many hostile
TradingSystems share it, so the suite is fast and proves they do not disturb each other), a second
namespace holding a Secret the operator must never read, and helpers that scan for leaked values."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client

from tests.conftest import Cluster
from tests.operator.conftest import TS, OperatorProcess, release_finalizers, start_operator

CREDENTIALS_SECRET = "alpaca-creds"


def _new_namespace(core: client.CoreV1Api, prefix: str) -> str:
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


@pytest.fixture(scope="module")
def namespaces(kube_api: client.ApiClient) -> Iterator[Namespaces]:
    core = client.CoreV1Api(kube_api)
    hostile = _new_namespace(core, "hostile")
    other = _new_namespace(core, "hostile-other")
    values = (f"OTHER-KEY-{secrets.token_hex(8)}", f"OTHER-SECRET-{secrets.token_hex(8)}")
    core.create_namespaced_secret(
        other,
        {
            "metadata": {"name": CREDENTIALS_SECRET},
            "stringData": {"ALPACA_API_KEY": values[0], "ALPACA_API_SECRET": values[1]},
        },
    )
    yield Namespaces(hostile, other, values)
    for ns in (hostile, other):
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(ns)


@pytest.fixture(scope="module")
def hostile_operator(
    cluster: Cluster, namespaces: Namespaces, kube_api: client.ApiClient
) -> Iterator[OperatorProcess]:
    """The operator watching only the hostile namespace, shared by every test of the module."""
    op = start_operator(cluster, [namespaces.hostile])
    yield op
    op.stop()
    release_finalizers(kube_api, namespaces.hostile)
    if op.proc.returncode not in (0, None, -15):
        print(f"--- operator log ({op.log}) ---\n{op.tail(150)}")
    op.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def tsm(kube_api: client.ApiClient) -> TS:
    return TS(kube_api)


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
