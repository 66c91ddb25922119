"""A test's own TradingSystem in its own namespace on the real cluster (tests/pods): created with no
image (the operator's default, the chart's image, applies), waited for, and deleted with its namespace."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
