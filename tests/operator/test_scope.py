"""Many TradingSystems in several namespaces, and an operator restricted to a list of them."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.clusters import Cluster
from tests.operator.harness import TS, finish, release_finalizers, start_operator, wait_for


@pytest.fixture
def three_namespaces(kube_api: client.ApiClient) -> Iterator[list[str]]:
    core = client.CoreV1Api(kube_api)
    names = [f"t-scope-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    for name in names:
        wait_for(lambda name=name: core.read_namespaced_service_account("default", name), what="default SA")
    yield names
    for name in names:
        release_finalizers(kube_api, name)
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


def test_watches_only_the_namespaces_it_is_given(
    cluster: Cluster,
    ts: TS,
    three_namespaces: list[str],
    request: pytest.FixtureRequest,
) -> None:
    watched_a, watched_b, elsewhere = three_namespaces
    op = start_operator(cluster, [watched_a, watched_b])
    try:
        for ns in (watched_a, watched_b, elsewhere):
            ts.create(ns, "alpha")
            ts.create(ns, "beta", {"symbols": ["SPY"]})
        for ns in (watched_a, watched_b):
            for name in ("alpha", "beta"):
                ts.wait_ready(ns, name)
        health = op.health()
        assert health["tradingsystems"] == 4
        assert "quantzoo_operator_managed_tradingsystems 4.0" in op.metrics()

        time.sleep(1)  # a moment more for an operator that (wrongly) watched everything
        for name in ("alpha", "beta"):
            outside = ts.get(elsewhere, name)
            assert not outside.get("status"), "the operator touched a namespace it does not watch"
            assert not outside["metadata"].get("finalizers")
        assert not client.AppsV1Api(ts.api).list_namespaced_stateful_set(elsewhere).items
    finally:
        op.stop()
        finish(op, request)


def test_json_logs_name_the_tradingsystem(
    cluster: Cluster, ts: TS, namespace: str, request: pytest.FixtureRequest
) -> None:
    op = start_operator(cluster, [namespace])
    try:
        ts.create(namespace, "demo")
        ts.wait_ready(namespace, "demo")
        lines = op.log_lines()
        assert lines, "the operator logs JSON lines"
        about = [line for line in lines if line.get("tradingsystem") == "demo"]
        assert about, "kopf's lines about the object carry its name"
        assert all(line["namespace"] == namespace for line in about)
        assert all(line["component"] == "operator" for line in lines)
        metrics = op.metrics()
        assert 'quantzoo_operator_reconcile_total{handler="reconcile"}' in metrics
        assert "quantzoo_operator_reconcile_duration_seconds_bucket" in metrics
        assert "quantzoo_operator_reconcile_errors_total" in metrics
    finally:
        op.stop()
        release_finalizers(ts.api, namespace)
        finish(op, request)
