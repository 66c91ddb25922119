"""Fixtures for the tests on real pods, on the session's real node (`real_cluster`, tests/conftest.py): the
chart is installed once with the locally built image, and one TradingSystem runs on it."""

from __future__ import annotations

import json

import pytest

from hack.devcluster import node
from tests.pods import realpods
from tests.pods.realpods import MONITORING_NS, OPERATOR_NS, OUTSIDER_NS, SYSTEM, TRADING_NS


def _namespace(cluster: node.RealCluster, name: str, restricted: bool) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(ns))


@pytest.fixture(scope="session")
def release(real_cluster: node.RealCluster) -> node.RealCluster:
    """`helm install` of the chart with the local image; the namespace enforces the restricted profile."""
    _namespace(real_cluster, OPERATOR_NS, restricted=True)
    repository, tag = real_cluster.node.app_image.rsplit(":", 1)
    helm = real_cluster.plane.bin_dir / "helm"
    res = node.run(
        *(str(helm), "install", "quantzoo", str(node.REPO / "charts" / "quantzoo")),
        *("--kubeconfig", str(real_cluster.kubeconfig), "-n", OPERATOR_NS),
        *("--set", f"image.repository={repository}", "--set", f"image.tag={tag}"),
        *("--set", "image.pullPolicy=Never"),
        *("--set-json", f'monitoring.scrapeNamespaces=["{MONITORING_NS}"]'),
        *("--set-json", f'pushNetworks=["{node.CLUSTER_CIDR}"]', "--wait", "--timeout=5m"),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return real_cluster


@pytest.fixture(scope="session")
def trading_system(release: node.RealCluster) -> dict[str, dict]:
    """One TradingSystem in a restricted namespace; returns its Ready engine and safety pods."""
    for ns, restricted in ((TRADING_NS, True), (MONITORING_NS, False), (OUTSIDER_NS, False)):
        _namespace(release, ns, restricted)
    image = {"image": release.node.app_image, "imagePullPolicy": "Never"}
    ts = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": SYSTEM, "namespace": TRADING_NS},
        "spec": {
            "symbols": ["AAPL", "MSFT"],
            "risk": {"maxOrderNotional": 50000},
            "engine": image,
            "safety": image,
        },
    }
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(ts))
    selector = f"trading.quantzoo.io/system={SYSTEM},app.kubernetes.io/component="
    return {c: realpods.one_ready_pod(release, TRADING_NS, selector + c, 240) for c in ("engine", "safety")}
