"""Deleting the namespace of an ENGAGED TradingSystem finishes (found by the chart lifecycle on real pods).

Two defects kept the TradingSystem's finalizer, and so the namespace, for ever:
- an operator watching listed namespaces stopped serving one as soon as the namespace controller marked it
  for deletion (kopf's namespace scan), before that controller deleted the TradingSystems in it: nobody
  ran the finalizer (settings.py now turns kopf's scan off for listed, exact namespaces);
- the finalizer records a kill tombstone (a ConfigMap) before it lets go of an engaged system, and in a
  namespace being deleted the API server refuses every create (403, cause NamespaceTerminating): the
  finalizer failed and retried for ever. The tombstone is for a delete-and-recreate in a namespace that
  stays; in one that is going it would go too, so it is skipped there.
Against the real API server, namespace controller and the operator process; the engine is a stand-in that
acknowledges the halt (tests/operator/conftest.py).
"""

from __future__ import annotations

from kubernetes import client

from tests.operator.harness import (
    TS,
    EngineFleet,
    OperatorProcess,
    running_with_standin,
    wait_for,
)


def _namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def test_deleting_the_namespace_of_an_engaged_system_halts_it_and_finishes(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet, kube_api: client.ApiClient
) -> None:
    running_with_standin(ts, engines, namespace, "demo")
    ts.engage_acknowledged(namespace, "demo", reason="incident", operator="alice")

    core = client.CoreV1Api(kube_api)
    core.delete_namespace(namespace)
    wait_for(lambda: ts.get(namespace, "demo") is None, timeout=45, what="the TradingSystem to go")
    wait_for(lambda: _namespace_gone(core, namespace), timeout=60, what="the namespace to finish deleting")
