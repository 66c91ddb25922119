"""Fixtures shared by the end-to-end tests: one operator per module, a pod runner per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hack.devcluster.podrunner import PodRunner
from hack.devcluster.stack import OperatorProcess, start_operator


@pytest.fixture(scope="module")
def operator_process(cluster) -> Iterator[OperatorProcess]:
    op = start_operator(cluster.kubeconfig)
    yield op
    op.stop()


@pytest.fixture
def runner(cluster, kube_api) -> Iterator[PodRunner]:
    r = PodRunner(cluster.plane, cluster.kubeconfig, kube_api)
    yield r
    r.stop_all()
