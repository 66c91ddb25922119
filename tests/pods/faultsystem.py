"""A fault test's own TradingSystem on the session's real node (tests/pods): created in its own namespace
with the chart's image, read through the Kubernetes client (faster than kubectl where a test times a
fault), its engine and safety pods reached at their pod addresses, deleted with its namespace afterwards.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx
from kubernetes import client, config

from hack.devcluster import node, podaddress
from tests.pods import ownsystem

GROUP, VERSION, PLURAL = "trading.quantzoo.io", "v1alpha1", "tradingsystems"
SPEC = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 11, "intervalSeconds": 0.2},
    "risk": {"staleDataSeconds": 30},
}


class System:
    def __init__(self, cluster: node.RealCluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.engine: podaddress.PodAddress | None = None
        self.safety: podaddress.PodAddress | None = None

    # -- the TradingSystem ---------------------------------------------------------------------------
    def get(self) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)

    def patch(self, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch
        )

    def conditions(self) -> dict[str, dict]:
        return {c["type"]: c for c in (self.get().get("status") or {}).get("conditions") or []}

    def converged(self) -> dict | None:
        """The TradingSystem once Ready=True and its status describes the current generation."""
        ts = self.get()
        st = ts.get("status") or {}
        ready = {c["type"]: c for c in st.get("conditions") or []}.get("Ready") or {}
        current = st.get("observedGeneration") == ts["metadata"]["generation"]
        return ts if current and ready.get("status") == "True" else None

    def acknowledged(self) -> dict | None:
        ks = (self.get().get("status") or {}).get("killSwitch") or {}
        acks = ks.get("acknowledgements") or []
        return ks if ks.get("engaged") and acks and all(a.get("engaged") for a in acks) else None

    def events(self, reason: str) -> int:
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={self.name},reason={reason}"
        ).items
        return sum(e.count or 1 for e in items)

    # -- children ------------------------------------------------------------------------------------
    def admin_token(self) -> str | None:
        """The engine's admin token: the operator's first child of a new TradingSystem."""
        try:
            secret = self.core.read_namespaced_secret(f"{self.name}-engine-admin", self.namespace)
        except client.ApiException:
            return None
        return base64.b64decode((secret.data or {}).get("token", "")).decode() or None

    def engine_sets(self) -> list[str]:
        sets = self.apps.list_namespaced_stateful_set(
            self.namespace, label_selector=f"trading.quantzoo.io/system={self.name}"
        ).items
        return [s.metadata.name for s in sets]

    def engine_pods(self) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=ownsystem.SELECTOR.format(name=self.name, component="engine")
        ).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def address_pods(self, timeout: float = 240) -> None:
        """Wait for Ready engine and safety pods and address them."""
        for component, port in (("engine", 8001), ("safety", 8888)):
            pod = ownsystem.ready_pod(self.cluster, self.namespace, self.name, component, timeout)
            v1pod = self.core.read_namespaced_pod(pod["metadata"]["name"], self.namespace)
            setattr(self, component, podaddress.of_pod(self.api, self.cluster.plane, v1pod, port))

    # -- the engine and safety pods ------------------------------------------------------------------
    def engine_state(self) -> dict:
        assert self.engine is not None
        return httpx.get(self.engine.url + "/state", timeout=5).json()

    def halted(self) -> bool:
        st = self.engine_state()
        return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]

    def safety_headers(self) -> dict[str, str]:
        assert self.safety is not None
        return {"Authorization": f"Bearer {self.safety.secret('SAFETY_API_TOKEN')}"}

    def place_order(self, symbol: str, side: str, quantity: float) -> httpx.Response:
        assert self.engine is not None
        headers = {"Authorization": f"Bearer {self.engine.secret('ENGINE_ADMIN_TOKEN')}"}
        body = {"symbol": symbol, "side": side, "quantity": quantity}
        return httpx.post(self.engine.url + "/orders", json=body, headers=headers, timeout=10)

    def engine_log_entries(self) -> Iterator[dict[str, Any]]:
        assert self.engine is not None
        out = self.cluster.plane.kubectl("-n", self.namespace, "logs", self.engine.pod, check=False).stdout
        for line in out.splitlines():
            with suppress(ValueError):
                yield json.loads(line)

    def watch_saw(self, generation: int) -> bool:
        """Whether the engine logged a kill-switch command of `generation` from its own Kubernetes watch."""
        return any(
            str(e.get("message", "")).startswith("kill-switch command")
            and e.get("source") == "kubernetes-watch"
            and e.get("generation") == generation
            for e in self.engine_log_entries()
        )


@contextmanager
def system(cluster: node.RealCluster, namespace: str, name: str) -> Iterator[System]:
    """A System in its own restricted namespace, not yet applied; deleted (while the operator runs, so its
    finalizer lets go) with its namespace afterwards."""
    ownsystem.namespace(cluster, namespace)
    try:
        yield System(cluster, namespace, name)
    finally:
        cluster.plane.kubectl("-n", namespace, "delete", "ts", name, "--timeout=120s", check=False)
        cluster.plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def apply(s: System) -> None:
    ownsystem.apply(s.cluster, s.namespace, s.name, SPEC)


class EngineCounter:
    """Samples, in the background, how many engine StatefulSets and live engine pods exist."""

    def __init__(self, s: System) -> None:
        self.system = s
        self.max_sets = 0
        self.max_pods = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(client.ApiException):
                self.max_sets = max(self.max_sets, len(self.system.engine_sets()))
                self.max_pods = max(self.max_pods, len(self.system.engine_pods()))
            self._stop.wait(0.1)

    def __enter__(self) -> EngineCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _ipv4(hex_address: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(hex_address, 16)))


def pending_requests(pid: int, port: int, peer: str) -> set[int]:
    """The client ports of TCP connections from `peer` to `port` in the network namespace of process `pid`
    whose bytes wait unread (the receive queue): requests a stopped server has not read yet."""
    waiting: set[int] = set()
    with open(f"/proc/{pid}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            local_port = int(local.split(":")[1], 16)
            remote_ip, remote_port = remote.split(":")
            rx_queue = int(queues.split(":")[1], 16)
            if state == "01" and local_port == port and _ipv4(remote_ip) == peer and rx_queue > 0:
                waiting.add(int(remote_port, 16))
    return waiting
