"""The operator tests' harness: the operator as a process against the real API server, TradingSystem helpers,
and stand-in engines (fixtures that use them are in conftest.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.accounts import ACCOUNT_PLURAL
from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION, engage_patch

from hack.devcluster.leaks import REGISTRY as LEAKS
from tests.clusters import Cluster
from tests.operator.standin_engine import StandInEngine, free_port

T = TypeVar("T")


# Short timings for tests (production defaults are in quantzoo_operator/settings.py).
FAST_ENV = {
    "QUANTZOO_OPERATOR_DELETE_HALT_TIMEOUT_SECONDS": "3",
    "QUANTZOO_OPERATOR_KEEP_HALT_INTERVAL_SECONDS": "1",
    "QUANTZOO_OPERATOR_RECONCILE_BACKOFF_SECONDS": "2",
    "QUANTZOO_OPERATOR_PUSH_TIMEOUT_SECONDS": "1",
    "QUANTZOO_OPERATOR_LOG_LEVEL": "INFO",
    # Simulated pods have made-up IPs: push only to the local processes standing in for them.
    "QUANTZOO_OPERATOR_PUSH_NETWORKS": "127.0.0.0/8",
}


# -- polling --------------------------------------------------------------------------------------
def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except client.ApiException as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


# -- the operator process -------------------------------------------------------------------------
@dataclass
class OperatorProcess:
    proc: subprocess.Popen
    port: int
    log: Path
    namespaces: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return httpx.get(self.url + "/healthz", timeout=1).json()
        return None

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=2).text

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            LEAKS.scrape(self.url + "/metrics", "metrics-operator", timeout=1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_operator(
    cluster: Cluster,
    namespaces: list[str] | None,
    *,
    kubeconfig: Path | None = None,
    extra_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> OperatorProcess:
    port = free_port()
    args = [sys.executable, "-m", "quantzoo_operator", "--standalone", "--liveness-port", str(port)]
    for ns in namespaces or []:
        args += ["--namespace", ns]
    if not namespaces:
        args.append("--all-namespaces")
    env = {**cluster.env(), **FAST_ENV, **(extra_env or {})}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    log = Path(tempfile.mkstemp(prefix="quantzoo-operator-", suffix=".log", dir=log_dir)[1])
    LEAKS.file(log)  # scanned for secret values at the end of the session (tests/zz_leaks)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    op = OperatorProcess(proc=proc, port=port, log=log, namespaces=tuple(namespaces or ()))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"operator exited with {proc.returncode}:\n{op.tail()}")
            health = op.health()
            if health and health.get("alive") and health.get("synced"):
                return op
            time.sleep(0.1)
        raise TimeoutError(f"operator did not become healthy:\n{op.tail()}")
    except BaseException:
        op.stop()
        raise


def release_finalizers(api: client.ApiClient, namespace: str) -> None:
    """With the operator stopped nobody removes its finalizer: let the namespace be deleted."""
    custom = client.CustomObjectsApi(api)
    for plural in (PLURAL, ACCOUNT_PLURAL):
        with contextlib.suppress(client.ApiException):
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
                with contextlib.suppress(client.ApiException):
                    custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        plural,
                        item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json",
                    )


def finish(op: OperatorProcess, request: pytest.FixtureRequest) -> None:
    """Show the operator's log when the test failed; otherwise drop it."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({op.log}) ---\n{op.tail(150)}")
    else:
        op.log.unlink(missing_ok=True)


# -- TradingSystems -------------------------------------------------------------------------------
class TS:
    """TradingSystem helpers bound to the admin client."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def create(
        self, namespace: str, name: str, spec: dict[str, Any] | None = None, **meta: Any
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TradingSystem",
            "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": spec if spec is not None else {"symbols": ["AAPL", "MSFT"]},
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json"
        )

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def condition(self, namespace: str, name: str, ctype: str) -> dict[str, Any] | None:
        ts = self.get(namespace, name) or {}
        for cond in (ts.get("status") or {}).get("conditions") or ():
            if cond["type"] == ctype:
                return cond
        return None

    def wait_condition(
        self,
        namespace: str,
        name: str,
        ctype: str,
        status: str,
        reason: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cond = self.condition(namespace, name, ctype)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return cond
            return None

        return wait_for(check, timeout, what=f"{ctype}={status} ({reason or 'any reason'}) on {name}")

    def engage_acknowledged(self, namespace: str, name: str, **engage: Any) -> dict[str, Any]:
        """Engage the kill switch (`engage_patch`'s arguments); wait until every replica acknowledged it."""
        patched = self.patch(namespace, name, engage_patch(**engage))
        self.wait_condition(namespace, name, "KillSwitchEngaged", "True", reason="Acknowledged")
        return patched

    def wait_ready(self, namespace: str, name: str, timeout: float = 30) -> dict[str, Any]:
        return self.wait_condition(namespace, name, "Ready", "True", timeout=timeout)

    def engine_pods(self, namespace: str, name: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(
            namespace,
            label_selector=f"app.kubernetes.io/component=engine,trading.quantzoo.io/system={name}",
        ).items

    def engine_pod(self, namespace: str, name: str, timeout: float = 30) -> client.V1Pod:
        def ready_pod() -> client.V1Pod | None:
            for pod in self.engine_pods(namespace, name):
                conds = {c.type: c.status for c in (pod.status.conditions or [])}
                if pod.metadata.deletion_timestamp is None and conds.get("Ready") == "True":
                    return pod
            return None

        return wait_for(ready_pod, timeout, what=f"a ready engine pod of {name}")

    def annotate_engine_pod(self, namespace: str, pod: str, url: str) -> None:
        """Point the operator at a real process standing in for the (simulated) pod."""
        self.core.patch_namespaced_pod(
            pod, namespace, {"metadata": {"annotations": {ADMIN_ENDPOINT_ANNOTATION: url}}}
        )

    def admin_token(self, namespace: str, name: str, timeout: float = 30) -> str:
        secret = wait_for(
            lambda: self._secret(namespace, f"{name}-engine-admin"), timeout, what="the engine admin Secret"
        )
        return base64.b64decode(secret.data["token"]).decode()

    def _secret(self, namespace: str, name: str) -> client.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, namespace: str, name: str) -> list[client.CoreV1Event]:
        return self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=TradingSystem"
        ).items

    def wait_event(self, namespace: str, name: str, reason: str, timeout: float = 30) -> client.CoreV1Event:
        def check() -> client.CoreV1Event | None:
            return next((e for e in self.events(namespace, name) if e.reason == reason), None)

        return wait_for(check, timeout, what=f"Event {reason} on {name}")


@dataclass
class EngineFleet:
    """Stand-in engines started by a test; all stopped at teardown."""

    running: list[StandInEngine] = field(default_factory=list)

    def start(self, token: str, pod: str, port: int | None = None) -> StandInEngine:
        engine = StandInEngine(token, pod=pod, port=port).start()
        self.running.append(engine)
        return engine

    def stop_all(self) -> None:
        for engine in self.running:
            engine.stop()


def attach_standin(ts: TS, engines: EngineFleet, namespace: str, name: str) -> StandInEngine:
    """Start a stand-in engine for `name`'s engine pod and point the pod's annotation at it."""
    token = ts.admin_token(namespace, name)
    pod = ts.engine_pod(namespace, name)
    engine = engines.start(token, pod.metadata.name)
    ts.annotate_engine_pod(namespace, pod.metadata.name, engine.url)
    return engine


def running_with_standin(
    ts: TS, engines: EngineFleet, namespace: str, name: str, **meta: Any
) -> StandInEngine:
    """Most operator tests' start: the TradingSystem created, Ready, its engine pod answered by a stand-in."""
    ts.create(namespace, name, **meta)
    ts.wait_ready(namespace, name)
    return attach_standin(ts, engines, namespace, name)
