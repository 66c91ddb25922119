"""Helpers for the real-Argo-CD tests: the git repository Argo CD syncs from (written by the test, served
as a file:// URL, as Argo CD's own e2e does), and what the tests read from the real engine pods and the
operator's Deployment while Argo CD works."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import httpx
from kubernetes import client

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER_URL = "https://git.example.com/your-org/quantzoo.git"
ENGINE = "app.kubernetes.io/component=engine"
SYSTEM_LABEL = "trading.quantzoo.io/system"
ENGINE_PORT = 8001


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


class Poller:
    """Calls `poll()` every `interval` seconds in a daemon thread until it returns True or `stop()`."""

    interval = 0.2

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and not self.poll():
            self._stop.wait(self.interval)

    def poll(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


class EngineWatch(Poller):
    """Reads every engine pod's /state (by pod IP, from this host, as tests/pods does) until stopped, and
    keeps the states each system's engine answered, in order. A deleted engine pod cannot be asked
    afterwards, so a halt during a deletion is seen only while the pod still answers."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__()
        self.core, self.namespace = core, namespace
        self.seen: dict[str, list[str]] = {}
        self.http = httpx.Client(timeout=1)

    def poll(self) -> bool:
        with contextlib.suppress(client.ApiException, ValueError):
            for pod in self.core.list_namespaced_pod(self.namespace, label_selector=ENGINE).items:
                system = pod.metadata.labels.get(SYSTEM_LABEL)
                if not pod.status.pod_ip or system is None:
                    continue
                with contextlib.suppress(httpx.HTTPError):
                    state = self.http.get(f"http://{pod.status.pod_ip}:{ENGINE_PORT}/state").json()
                    states = self.seen.setdefault(system, [])
                    if not states or states[-1] != state["trading_state"]:
                        states.append(state["trading_state"])
        return False

    def stop(self) -> None:
        super().stop()
        self.http.close()


class DeploymentWatch(Poller):
    """Records when a Deployment starts going: the first poll that finds it deleted or being deleted."""

    interval = 0.3

    def __init__(self, apps: client.AppsV1Api, namespace: str, selector: str) -> None:
        super().__init__()
        self.apps, self.namespace, self.selector = apps, namespace, selector
        self.gone_at: float | None = None

    def poll(self) -> bool:
        with contextlib.suppress(client.ApiException):
            items = self.apps.list_namespaced_deployment(self.namespace, label_selector=self.selector).items
            if not items or items[0].metadata.deletion_timestamp is not None:
                self.gone_at = time.time()
                return True
        return False


def engine_state(core: client.CoreV1Api, namespace: str, system: str) -> dict:
    """The /state of `system`'s Ready engine pod, asked at its pod IP."""
    for pod in core.list_namespaced_pod(namespace, label_selector=f"{ENGINE},{SYSTEM_LABEL}={system}").items:
        conds = {c.type: c.status for c in (pod.status.conditions or [])}
        if pod.metadata.deletion_timestamp is None and conds.get("Ready") == "True":
            return httpx.get(f"http://{pod.status.pod_ip}:{ENGINE_PORT}/state", timeout=5).json()
    raise LookupError(f"no Ready engine pod of {namespace}/{system}")
