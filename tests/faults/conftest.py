"""Fixtures of the fault tests: the real control plane (the session `cluster`), a real operator that a test
may SIGKILL and restart, engine and safety pods run as real processes, and the leak checks every fault test
ends with (no stray process, one engine StatefulSet, at most one engine pod, no orphaned child).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hack.devcluster.podrunner import PodRunner
from tests.faults.delay_proxy import DelayProxy
from tests.faults.harness import FAULT_ENV, Faults, Operators
from tests.faults.watching_engine import api_server_port
from tests.operator.harness import release_finalizers

pytestmark = pytest.mark.slow


@pytest.fixture
def faults(cluster, kube_api, namespace, request) -> Iterator[Faults]:
    runner = PodRunner(cluster.plane, cluster.kubeconfig, kube_api)
    operators = Operators(cluster.kubeconfig, namespace, dict(FAULT_ENV))
    f = Faults(kube_api, runner, operators, namespace)
    # Keep every process the runner ever started (stop_all forgets them), for the leak check.
    original_run = runner.run

    def run(*args: Any, **kwargs: Any) -> Any:
        local = original_run(*args, **kwargs)
        f.runner_history.append(local)
        return local

    runner.run = run  # type: ignore[method-assign]
    try:
        yield f
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(operators.logs())
            for local in f.runner_history:
                print(f"--- {local.pod} ({local.log}) ---\n{local.tail(60)}")
        runner.stop_all()
        operators.stop_all()
        release_finalizers(kube_api, namespace)


@pytest.fixture
def proxy(cluster) -> Iterator[DelayProxy]:
    """A DelayProxy in front of the API server (tests/faults/watching_engine.py's `kubeconfig_via` routes an
    engine through it), to black-hole or slow its route."""
    p = DelayProxy("127.0.0.1", api_server_port(cluster.kubeconfig)).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
