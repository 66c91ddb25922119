"""Fixtures for the Helm chart tests: the real helm binary and a renderer that parses its output.

helm comes from hack/build-control-plane.sh (it builds the control-plane binaries and helm once per machine,
cached outside the repository; the last line it prints is the bin directory). Without it the chart tests
skip with the reason, unless CI is set: under CI a missing helm is a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantzoo"
KUBE_VERSION = "1.34.4"
MONITORING_API = "monitoring.coreos.com/v1"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass
class Helm:
    binary: str
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=120, check=False, env=self.env
        )


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The real helm, with its cache/config/data kept out of $HOME."""
    script = REPO / "hack" / "build-control-plane.sh"
    problem = ""
    try:
        proc = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=3600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        proc, problem = None, f"{script.name} did not run: {exc}"
    if proc is not None and proc.returncode != 0:
        problem = f"{script.name} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
    helm_bin = None
    if proc is not None and proc.returncode == 0 and proc.stdout.strip():
        candidate = Path(proc.stdout.strip().splitlines()[-1]) / "helm"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            helm_bin = candidate
        else:
            problem = f"{script.name} printed {candidate.parent} but it holds no executable helm"
    if helm_bin is None:
        message = f"helm is not available: {problem}"
        if _in_ci():
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return Helm(str(helm_bin), env)


@dataclass
class Rendered:
    objects: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        )
        return found[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., Rendered]:
    """render(*helm_args, monitoring_api=False) -> Rendered; fails the test when helm refuses."""
    cache: dict[tuple, Rendered] = {}

    def _render(
        *args: str, monitoring_api: bool = False, release: str = "qz", namespace: str = "quantzoo-system"
    ):
        key = (args, monitoring_api, release, namespace)
        if key not in cache:
            cmd = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
            if monitoring_api:
                cmd += ["--api-versions", MONITORING_API]
            proc = helm.run(*cmd, *args)
            assert proc.returncode == 0, f"helm template {' '.join(args)} failed:\n{proc.stderr}"
            cache[key] = Rendered([d for d in yaml.safe_load_all(proc.stdout) if d])
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def refuse(helm: Helm) -> Callable[..., str]:
    """refuse(*helm_args) -> stderr of a `helm template` that must fail."""

    def _refuse(*args: str) -> str:
        proc = helm.run("template", "qz", str(CHART), "--kube-version", KUBE_VERSION, *args)
        assert proc.returncode != 0, f"helm accepted {' '.join(args)}; rendered:\n{proc.stdout[:2000]}"
        return proc.stderr

    return _refuse


@pytest.fixture(scope="session")
def rbac_rules() -> list[dict]:
    return yaml.safe_load((CHART / "files" / "operator-rbac-rules.yaml").read_text())
