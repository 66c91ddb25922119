"""The fault tests' harness: the operator(s) as processes, the stack of a TradingSystem with real engine
processes, and the faults they are put through (the fixture that builds it is in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from hack.devcluster.podrunner import PodRunner, wait_for
from hack.devcluster.stack import OperatorProcess, TradingSystemStack, start_operator
from tests.operator.harness import FAST_ENV

# FAST_ENV, with the production push deadline (2 s): the engine answers after its 1.5 s kill deadline
# when the broker misbehaves, and that answer must still count.
FAULT_ENV = {**FAST_ENV, "QUANTZOO_OPERATOR_PUSH_TIMEOUT_SECONDS": "2"}


# A fast simulated feed; a strategy that trades little (the tests place their own orders).
SPEC: dict[str, Any] = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 4, "orderQuantity": 1}},
    "marketData": {"kind": "simulated", "seed": 11, "intervalSeconds": 0.05},
    "risk": {"maxOrdersPerSecond": 50, "maxOrdersPerMinute": 3000, "staleDataSeconds": 30},
}


def group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Operators:
    """The operator for one namespace; SIGKILL and restart it as often as a test likes."""

    kubeconfig: Path
    namespace: str
    env: dict[str, str]
    current: OperatorProcess | None = None
    started: list[OperatorProcess] = field(default_factory=list)

    def start(self, **env: str) -> OperatorProcess:
        self.current = start_operator(self.kubeconfig, [self.namespace], {**self.env, **env})
        self.started.append(self.current)
        return self.current

    def sigkill(self) -> None:
        """An outage with no goodbye: no cleanup handler, no status write, no Event."""
        assert self.current is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.current.proc.pid, signal.SIGKILL)
        self.current.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.current is not None
        return self.current.proc.pid

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop_all(self) -> None:
        for op in self.started:
            op.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {op.log} ---\n{op.tail(80)}" for op in self.started)


@dataclass
class Faults:
    """Everything one fault test touches, and what it must leave behind."""

    api: client.ApiClient
    runner: PodRunner
    operators: Operators
    namespace: str

    def stack(self, spec: dict[str, Any] | None = None, name: str | None = None) -> TradingSystemStack:
        s = TradingSystemStack(self.api, self.runner, self.namespace, name or f"ts-{uuid.uuid4().hex[:6]}")
        s.create(spec or SPEC)
        return s

    def assert_no_leaks(self, stack: TradingSystemStack) -> None:
        """One engine StatefulSet and at most one engine pod; every child owned by the TradingSystem; and,
        once stopped, no process left of any engine, safety or operator started by the test."""
        apps = client.AppsV1Api(self.api)
        selector = f"trading.quantzoo.io/system={stack.name}"
        sets = apps.list_namespaced_stateful_set(self.namespace, label_selector=selector).items
        assert [s.metadata.name for s in sets] == [f"{stack.name}-engine"]
        assert len(engine_pods(stack)) <= 1
        assert_children_owned(self.api, stack)
        self.runner.stop_all()
        self.operators.stop_all()
        pids = [p.proc.pid for p in self.runner_history] + [o.proc.pid for o in self.operators.started]
        wait_for(lambda: all(group_gone(pid) for pid in pids), timeout=15, what="every child process gone")

    runner_history: list[Any] = field(default_factory=list)


def conditions(stack: TradingSystemStack) -> dict[str, dict]:
    """The TradingSystem's status conditions by type."""
    return {c["type"]: c for c in (stack.get().get("status") or {}).get("conditions") or []}


def converged(stack: TradingSystemStack) -> dict | None:
    """The TradingSystem once Ready=True and status describes the current generation."""
    ts = stack.get()
    st = ts.get("status") or {}
    ready = {c["type"]: c for c in st.get("conditions") or []}.get("Ready") or {}
    current = st.get("observedGeneration") == ts["metadata"]["generation"]
    return ts if current and ready.get("status") == "True" else None


def engine_pods(stack: TradingSystemStack) -> list[client.V1Pod]:
    pods = stack.core.list_namespaced_pod(
        stack.namespace,
        label_selector=f"app.kubernetes.io/component=engine,trading.quantzoo.io/system={stack.name}",
    ).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def assert_children_owned(api: client.ApiClient, stack: TradingSystemStack) -> None:
    """Every object labelled as this system's child is owned by the TradingSystem (no orphan)."""
    uid = stack.get()["metadata"]["uid"]
    selector = f"trading.quantzoo.io/system={stack.name},app.kubernetes.io/managed-by=quantzoo-operator"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rbac, net = client.RbacAuthorizationV1Api(api), client.NetworkingV1Api(api)
    policy = client.PolicyV1Api(api)
    ns = stack.namespace
    lists = {
        "StatefulSet": apps.list_namespaced_stateful_set,
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
        "ConfigMap": core.list_namespaced_config_map,
        "Secret": core.list_namespaced_secret,
        "ServiceAccount": core.list_namespaced_service_account,
        "Role": rbac.list_namespaced_role,
        "RoleBinding": rbac.list_namespaced_role_binding,
        "NetworkPolicy": net.list_namespaced_network_policy,
        "PodDisruptionBudget": policy.list_namespaced_pod_disruption_budget,
    }
    seen: dict[str, list[str]] = {}
    for kind, list_fn in lists.items():
        for obj in list_fn(ns, label_selector=selector).items:
            owners = [o.uid for o in obj.metadata.owner_references or []]
            assert owners == [uid], f"{kind}/{obj.metadata.name} is owned by {owners}, not {uid}"
            seen.setdefault(kind, []).append(obj.metadata.name)
    for kind, names in seen.items():
        assert len(names) == len(set(names)), f"duplicate {kind}: {names}"
    # The children every TradingSystem has (builders/): at least one of each, each exactly once above.
    for kind in ("StatefulSet", "Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role"):
        assert kind in seen, f"no {kind} child: {seen}"
