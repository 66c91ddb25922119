"""Fixtures of the operator's tests: the operator as a real subprocess (`python -m quantzoo_operator`),
TradingSystem helpers, polling with deadlines, and the stand-in engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.clusters import Cluster
from tests.operator.harness import (
    TS,
    EngineFleet,
    OperatorProcess,
    finish,
    release_finalizers,
    start_operator,
)


@pytest.fixture
def operator(
    cluster: Cluster,
    namespace: str,
    kube_api: client.ApiClient,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    """The operator as a subprocess, watching only this test's namespace."""
    op = start_operator(cluster, [namespace])
    yield op
    op.stop()
    release_finalizers(kube_api, namespace)
    finish(op, request)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def ts(kube_api: client.ApiClient) -> TS:
    return TS(kube_api)


@pytest.fixture
def engines() -> Iterator[EngineFleet]:
    fleet = EngineFleet()
    yield fleet
    fleet.stop_all()
