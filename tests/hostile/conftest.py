"""Fixtures of the hostile-input suite: one namespace and ONE operator process per module (many hostile
TradingSystems share it, so the suite is fast and proves they do not disturb each other), a second
namespace holding a Secret the operator must never read, and helpers that scan for leaked values."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.clusters import Cluster
from tests.hostile.harness import CREDENTIALS_SECRET, Namespaces, new_namespace
from tests.operator.harness import TS, OperatorProcess, release_finalizers, start_operator


@pytest.fixture(scope="module")
def namespaces(kube_api: client.ApiClient) -> Iterator[Namespaces]:
    core = client.CoreV1Api(kube_api)
    hostile = new_namespace(core, "hostile")
    other = new_namespace(core, "hostile-other")
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
