"""A whole QuantZoo stack on the local control plane, with real processes: the operator, and the engine and
safety pods it creates run by the pod runner. Shared by the end-to-end tests, the kill-switch benchmark
and the demo."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from quantzoo_api import API_VERSION, GROUP, KIND, PLURAL, VERSION

from hack.devcluster.leaks import REGISTRY as LEAKS
from hack.devcluster.podrunner import LocalPod, PodRunner, free_port, wait_for


@dataclass
class OperatorProcess:
    proc: subprocess.Popen
    log: Path
    port: int

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            LEAKS.scrape(f"http://127.0.0.1:{self.port}/metrics", "metrics-operator", timeout=1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_operator(
    kubeconfig: Path, namespaces: list[str] | None = None, env: dict[str, str] | None = None
) -> OperatorProcess:
    """`quantzoo-operator` as a subprocess (its own process, so killing it is a real outage)."""
    port = free_port()
    args = [f"--namespace={ns}" for ns in namespaces] if namespaces else ["--all-namespaces"]
    log = Path(tempfile.mkstemp(prefix="qz-operator-", suffix=".log")[1])
    LEAKS.file(log)
    proc_env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "QUANTZOO_OPERATOR_PORT": str(port),
        # Simulated pods have made-up IPs: push only to the local processes standing in for them.
        "QUANTZOO_OPERATOR_PUSH_NETWORKS": "127.0.0.0/8",
        **(env or {}),
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantzoo_operator", "--standalone", f"--liveness-port={port}", *args],
            env=proc_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    op = OperatorProcess(proc, log, port)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited with {proc.returncode}:\n{op.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        return False

    wait_for(healthy, timeout=60, what="operator /healthz")
    return op


@dataclass
class TradingSystemStack:
    """One TradingSystem with its engine and safety pods run as local processes."""

    api: client.ApiClient
    runner: PodRunner
    namespace: str
    name: str
    engine: LocalPod | None = None
    safety: LocalPod | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def crs(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def create(self, spec: dict[str, Any]) -> dict:
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": self.name}, "spec": spec}
        return self.crs.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self) -> dict:
        return self.crs.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)

    def patch(self, patch: dict) -> dict:
        return self.crs.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch
        )

    def token(self, secret: str) -> str:
        import base64

        data = self.core.read_namespaced_secret(secret, self.namespace).data or {}
        (value,) = data.values() if len(data) == 1 else (data.get("token"),)
        return base64.b64decode(value).decode()

    def _pod(self, component: str) -> str:
        def find() -> str | None:
            pods = self.core.list_namespaced_pod(
                self.namespace,
                label_selector=f"app.kubernetes.io/component={component},trading.quantzoo.io/system={self.name}",
            ).items
            running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
            return running[0].metadata.name if running else None

        return wait_for(find, timeout=60, what=f"{component} pod of {self.namespace}/{self.name} running")

    def run_engine(self, port: int | None = None, extra_env: dict[str, str] | None = None) -> LocalPod:
        self.engine = self.runner.run(self.namespace, self._pod("engine"), port=port, extra_env=extra_env)
        self.engine.wait_http("/healthz")
        self.runner.expose(self.namespace, f"{self.name}-engine", self.engine)
        return self.engine

    def run_safety(self, port: int | None = None, extra_env: dict[str, str] | None = None) -> LocalPod:
        self.safety = self.runner.run(
            self.namespace, self._pod("safety"), port=port, extra_env=extra_env, annotate=False
        )
        self.safety.wait_http("/healthz")
        return self.safety

    def engine_state(self) -> dict:
        assert self.engine is not None
        return httpx.get(self.engine.url + "/state", timeout=5).json()

    def acknowledged(self) -> dict | None:
        """`status.killSwitch` once every engine replica has acknowledged an engaged switch, else None."""
        ks = (self.get().get("status") or {}).get("killSwitch") or {}
        acks = ks.get("acknowledgements") or []
        return ks if ks.get("engaged") and acks and all(a.get("engaged") for a in acks) else None

    def flat_positions(self) -> dict | None:
        """The engine's `/positions/current` when every position is flat, else None."""
        assert self.engine is not None
        positions = httpx.get(self.engine.url + "/positions/current", timeout=5).json()
        return positions if all(float(p["quantity"]) == 0 for p in positions["positions"]) else None

    def admin_headers(self) -> dict[str, str]:
        """The engine's admin token as the engine holds it now (follows a rotation)."""
        assert self.engine is not None
        return {"Authorization": f"Bearer {self.engine.secret('ENGINE_ADMIN_TOKEN')}"}

    def safety_headers(self) -> dict[str, str]:
        assert self.safety is not None
        return {"Authorization": f"Bearer {self.safety.secret('SAFETY_API_TOKEN')}"}

    def place_order(self, symbol: str, side: str, quantity: float, **extra: Any) -> httpx.Response:
        assert self.engine is not None
        body = {"symbol": symbol, "side": side, "quantity": quantity, **extra}
        resp = httpx.post(self.engine.url + "/orders", json=body, headers=self.admin_headers(), timeout=5)
        if resp.status_code >= 400:
            LEAKS.response(resp, "place-order")  # error bodies are scanned for secrets at the end
        return resp

    def stop(self) -> None:
        for local in (self.safety, self.engine):
            if local is not None:
                local.stop(timeout=10)
