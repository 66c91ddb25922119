"""Helpers for the real-Argo-CD tests: the git repository Argo CD syncs from (written by the test, served
as a file:// URL, as Argo CD's own e2e does), the operator run as a local process that follows its
Deployment, and the real engines of the (simulated) engine pods."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from kubernetes import client

from hack.devcluster.podrunner import LocalPod, PodRunner, wait_for
from hack.devcluster.stack import OperatorProcess, start_operator

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER_URL = "https://git.example.com/your-org/quantzoo.git"


class GitRepo:
    """What Argo CD syncs from: a bare repository on this machine (`url`, file://) and a clone of it
    (`work`) holding argocd/ and charts/quantzoo, where a test edits, commits and pushes as a user would."""

    def __init__(self, root: Path) -> None:
        self.origin = root / "quantzoo.git"
        self.work = root / "quantzoo"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.origin)], check=True)
        subprocess.run(
            ["git", "clone", "-q", str(self.origin), str(self.work)], check=True, capture_output=True
        )
        self.git("config", "user.email", "ci@quantzoo.test")
        self.git("config", "user.name", "quantzoo ci")
        self.git("checkout", "-q", "-b", "main")
        for rel in ("argocd", "charts/quantzoo"):
            shutil.copytree(REPO / rel, self.work / rel)
        self.commit("QuantZoo as in this checkout")
        self.git("branch", "-q", "--set-upstream-to=origin/main")

    @property
    def url(self) -> str:
        return f"file://{self.origin}"

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.work), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    def write(self, rel: str, text: str) -> None:
        (self.work / rel).write_text(text)

    def read(self, rel: str) -> str:
        return (self.work / rel).read_text()

    def commit(self, message: str) -> str:
        """Commit everything and push it: Argo CD sees it at its next refresh."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")


def readme_commands(readme: Path, section: str) -> list[str]:
    """The shell commands of the first ```bash block after the heading `section` (one command a line)."""
    text = readme.read_text()
    start = text.index(section)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, f"no bash block under {section!r} in {readme}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


@dataclass
class OperatorFollower:
    """The operator as a local process that lives exactly as long as its Deployment: started when Argo CD's
    Deployment becomes Available (kwok runs no container), stopped when the Deployment is being deleted.
    Records when each happened, so a test can check what came before the operator went."""

    kubeconfig: Path
    apps: client.AppsV1Api
    namespace: str = "quantzoo-system"
    operator: OperatorProcess | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OperatorFollower:
        self._thread = threading.Thread(target=self._run, name="operator-follower", daemon=True)
        self._thread.start()
        return self

    def _deployment(self) -> client.V1Deployment | None:
        items = self.apps.list_namespaced_deployment(
            self.namespace, label_selector="app.kubernetes.io/component=operator"
        ).items
        return items[0] if items else None

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(client.ApiException):
                dep = self._deployment()
                alive = dep is not None and dep.metadata.deletion_timestamp is None
                if self.operator is None and alive and (dep.status.available_replicas or 0) >= 1:
                    self.operator = start_operator(self.kubeconfig)
                    self.started_at = time.time()
                elif self.operator is not None and not alive:
                    self.stopped_at = time.time()
                    self.operator.stop()
                    self.operator = None
                    return
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.operator is not None:
            self.operator.stop()
            self.operator = None


@dataclass
class Engines:
    """The real engine (python -m quantzoo_engine, simulated broker and feed) of each TradingSystem, run by
    the pod runner as a local process for its simulated engine pod, so the operator's kill-switch pushes
    and its finalizer's halt land on the real engine."""

    runner: PodRunner
    core: client.CoreV1Api
    running: dict[str, LocalPod] = field(default_factory=dict)

    def attach(self, namespace: str, system: str) -> LocalPod:
        pod = wait_for(
            lambda: _ready_engine_pod(self.core, namespace, system), 60, what=f"{system} engine pod"
        )
        engine = self.runner.run(namespace, pod)
        engine.wait_http("/healthz")
        self.running[system] = engine
        return engine

    def state(self, system: str) -> dict:
        return httpx.get(self.running[system].url + "/state", timeout=5).json()

    def stop_all(self) -> None:
        self.runner.stop_all()


def _ready_engine_pod(core: client.CoreV1Api, namespace: str, system: str) -> str | None:
    selector = f"app.kubernetes.io/component=engine,trading.quantzoo.io/system={system}"
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        conds = {c.type: c.status for c in (pod.status.conditions or [])}
        if pod.metadata.deletion_timestamp is None and conds.get("Ready") == "True":
            return pod.metadata.name
    return None
