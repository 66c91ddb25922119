"""A test's own TradingSystem in its own namespace on the real cluster (tests/pods): created with no
image (the operator's default, the chart's image, applies), waited for, and deleted with its namespace;
`System` is a handle on it and its engine pod (its API, its TradingSystem, its children)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for

from hack.devcluster import node
from tests.pods import realpods

RUNBOOK = node.REPO / "docs" / "RUNBOOK.md"
SELECTOR = "trading.quantzoo.io/system={name},app.kubernetes.io/component={component}"


def namespace(cluster: node.RealCluster, name: str, restricted: bool = True) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(ns))


def apply(cluster: node.RealCluster, ns: str, name: str, spec: dict[str, Any]) -> None:
    ts = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(ts))


@contextmanager
def trading_system(
    cluster: node.RealCluster, ns: str, name: str, spec: dict[str, Any], timeout: float = 240
) -> Iterator[dict[str, dict]]:
    """Yields {"engine": pod, "safety": pod}, both Ready; deletes the namespace afterwards."""
    namespace(cluster, ns)
    try:
        apply(cluster, ns, name, spec)
        yield {c: ready_pod(cluster, ns, name, c, timeout) for c in ("engine", "safety")}
    finally:
        cluster.plane.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)


def ready_pod(cluster: node.RealCluster, ns: str, name: str, component: str, timeout: float = 240) -> dict:
    return realpods.one_ready_pod(cluster, ns, SELECTOR.format(name=name, component=component), timeout)


def secret_token(cluster: node.RealCluster, ns: str, secret: str) -> str:
    data = realpods.kubectl_json(cluster, "-n", ns, "get", "secret", secret)["data"]
    return base64.b64decode(data["token"]).decode()


def runbook_block(heading: str, path: Path = RUNBOOK) -> str:
    """The first ```bash block under `heading` in docs/RUNBOOK.md: what the test runs verbatim."""
    text = path.read_text()
    start = text.index(heading)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert match, f"no bash block under {heading!r} in {path}"
    return match.group(1)


def bash(script: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# The children the operator makes for every TradingSystem, and the kinds it may make (builders/).
ALWAYS_CHILDREN = ("StatefulSet", "Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role")
CHILD_KINDS = (
    "statefulsets,deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,"
    "networkpolicies,poddisruptionbudgets"
)


@dataclass
class System:
    """A test's own TradingSystem and its engine pod: the engine's API by pod IP, with its admin token."""

    cluster: node.RealCluster
    name: str
    ns: str
    engine: dict
    url: str
    admin: dict[str, str]

    @classmethod
    def of(cls, cluster: node.RealCluster, ns: str, name: str, pods: dict[str, dict]) -> System:
        """The handle on the pods `trading_system` yielded."""
        engine = pods["engine"]
        token = secret_token(cluster, ns, f"{name}-engine-admin")
        url = f"http://{engine['status']['podIP']}:8001"
        return cls(cluster, name, ns, engine, url, {"Authorization": f"Bearer {token}"})

    @property
    def pod(self) -> str:
        return self.engine["metadata"]["name"]

    @property
    def pid(self) -> int:
        """The engine container's process (in the pod's netns); looked up each time."""
        pod = ready_pod(self.cluster, self.ns, self.name, "engine")
        return realpods.task_pid(self.cluster, realpods.container_id(pod, "engine"))

    def state(self) -> dict:
        return httpx.get(self.url + "/state", timeout=5).json()

    def positions(self) -> dict[str, float]:
        held = httpx.get(self.url + "/positions/current", timeout=5).json()["positions"]
        return {p["symbol"]: float(p["quantity"]) for p in held if float(p["quantity"])}

    def order(self, **extra: Any) -> httpx.Response:
        body = {"symbol": "AAPL", "side": "buy", "quantity": 1, **extra}
        return httpx.post(self.url + "/orders", json=body, headers=self.admin, timeout=10)

    def get(self) -> dict:
        return realpods.kubectl_json(self.cluster, "-n", self.ns, "get", "ts", self.name)

    def patch(self, patch: dict) -> float:
        self.cluster.plane.kubectl(
            "-n", self.ns, "patch", "ts", self.name, "--type=merge", "-p", json.dumps(patch)
        )
        return time.monotonic()

    def engage(self, reason: str) -> float:
        return self.patch(engage_patch(reason=reason, operator="kim", source="kubectl"))

    def release(self, reason: str) -> None:
        self.patch(release_patch_for(kill_switch_of(self.get()), operator="kim", reason=reason))
        realpods.wait_for(lambda: active(self.state()), 30, "ACTIVE after the release")

    def conditions(self) -> dict[str, dict]:
        return {c["type"]: c for c in (self.get().get("status") or {}).get("conditions") or []}

    def acknowledged(self, reason: str) -> dict | None:
        ks = (self.get().get("status") or {}).get("killSwitch") or {}
        acks = ks.get("acknowledgements") or []
        done = (
            ks.get("engaged") and ks.get("reason") == reason and acks and all(a.get("engaged") for a in acks)
        )
        return ks if done else None

    def assert_children_owned(self) -> None:
        """Every object labelled as this system's child is owned by its TradingSystem (no orphan, no
        duplicate), and it has one of each child every system has."""
        uid = self.get()["metadata"]["uid"]
        selector = f"trading.quantzoo.io/system={self.name},app.kubernetes.io/managed-by=quantzoo-operator"
        items = realpods.kubectl_json(self.cluster, "-n", self.ns, "get", CHILD_KINDS, "-l", selector)
        found: dict[str, list[str]] = {}
        for obj in items["items"]:
            kind, name = obj["kind"], obj["metadata"]["name"]
            owners = [o["uid"] for o in obj["metadata"].get("ownerReferences") or []]
            assert owners == [uid], f"{kind}/{name} is owned by {owners}, not {uid}"
            found.setdefault(kind, []).append(name)
        for kind, names in found.items():
            assert len(names) == len(set(names)), f"duplicate {kind}: {names}"
        for kind in ALWAYS_CHILDREN:
            assert kind in found, f"no {kind} child: {found}"


def active(state: dict) -> bool:
    return state["trading_state"] == "ACTIVE"


def seen(system: System, check: Callable[[dict], bool], timeout: float, what: str) -> tuple[float, dict]:
    """When the engine's /state first satisfied `check` (polled every 0.1 s), and that state."""

    def probe() -> tuple[float, dict] | None:
        state = system.state()
        return (time.monotonic(), state) if check(state) else None

    return realpods.wait_for(probe, timeout, what, interval=0.1)
