"""The engines' read of the TradingHalts on a dev cluster without the Helm chart (tests, benchmarks).

Every engine watches the cluster-scoped TradingHalts that cover it (issue #13) and fails closed without
that view; on a real install the chart's -halt-reader ClusterRoleBinding grants it. Harnesses that run
engines as their ServiceAccounts but do not install the chart apply the same template, rendered by the real
helm under its own release name (`quantzoo-dev`: no clash with a chart install in the same cluster).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RELEASE = "quantzoo-dev"
TEMPLATE = "templates/kill-levels-rbac.yaml"
KUBE_VERSION = "1.34.0"  # the dev control plane's


def render(helm: Path) -> str:
    args = [str(helm), "template", RELEASE, str(REPO / "charts" / "quantzoo"), "--show-only", TEMPLATE]
    args += ["--kube-version", KUBE_VERSION]  # helm alone assumes 1.20; the chart needs 1.30
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def install(kubectl: Callable[..., subprocess.CompletedProcess], helm: Path) -> None:
    """`kubectl` as ControlPlane.kubectl / the tests' Cluster.kubectl (args, check=, input=)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=render(helm))
