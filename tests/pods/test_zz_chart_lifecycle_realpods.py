"""The chart's life on real pods, after every other real-pod test (the file sorts last): `helm test` runs its
hook Pod on the real kubelet, a bad upgrade is refused and changes nothing, an upgrade rolls the operator's
pod and leaves the running systems alone, and an uninstall after the systems are deleted leaves nothing of
the release behind.

It walks the session's own release (tests/pods/conftest.py): a second release on the same cluster would
start a second operator reconciling the same TradingSystems. The uninstall is the last stage; nothing runs
on this release after it.
"""

from __future__ import annotations

import json

import pytest

from hack.devcluster import node
from tests.pods import realpods
from tests.pods.conftest import OPERATOR_NS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "quantzoo"
OPERATOR = "app.kubernetes.io/component=operator"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


def helm(cluster: node.RealCluster, *args: str, timeout: str = "180s") -> tuple[int, str]:
    res = node.run(
        str(cluster.plane.bin_dir / "helm"),
        *args,
        *("--kubeconfig", str(cluster.kubeconfig), "-n", OPERATOR_NS, "--timeout", timeout),
        check=False,
    )
    return res.returncode, res.stdout + res.stderr


def revision(cluster: node.RealCluster) -> int:
    code, out = helm(cluster, "status", RELEASE, "-o", "json")
    assert code == 0, out
    return json.loads(out)["version"]


def operator_deployment(cluster: node.RealCluster) -> dict:
    (deploy,) = realpods.kubectl_json(cluster, "-n", OPERATOR_NS, "get", "deployments", "-l", INSTANCE)[
        "items"
    ]
    return deploy


def all_systems(cluster: node.RealCluster) -> list[tuple[str, str]]:
    items = realpods.kubectl_json(cluster, "get", "tradingsystems", "-A")["items"]
    return [(ts["metadata"]["namespace"], ts["metadata"]["name"]) for ts in items]


def test_helm_test_runs_its_hook_pod_on_the_real_kubelet(release):
    code, out = helm(release, "test", RELEASE)
    assert code == 0, out
    assert "Phase:          Succeeded" in out


def test_an_upgrade_with_bad_values_is_refused_and_changes_nothing(release):
    before_revision, before = revision(release), operator_deployment(release)
    code, out = helm(
        release,
        "upgrade",
        RELEASE,
        str(node.REPO / "charts" / "quantzoo"),
        "--reuse-values",
        "--set",
        "logLevel=chatty",
        "--wait",
    )
    assert code != 0
    assert "at '/logLevel'" in out
    assert revision(release) == before_revision
    assert operator_deployment(release)["metadata"]["generation"] == before["metadata"]["generation"]


def test_an_upgrade_rolls_the_operators_pod_and_leaves_the_systems_alone(release):
    old_pod = realpods.one_ready_pod(release, OPERATOR_NS, OPERATOR)["metadata"]["name"]
    systems = {
        (ts["metadata"]["namespace"], ts["metadata"]["name"]): ts["metadata"]["generation"]
        for ts in realpods.kubectl_json(release, "get", "tradingsystems", "-A")["items"]
    }
    before_revision = revision(release)
    code, out = helm(
        release,
        "upgrade",
        RELEASE,
        str(node.REPO / "charts" / "quantzoo"),
        "--reuse-values",
        "--set",
        "logLevel=debug",
        "--wait",
    )
    assert code == 0, out
    assert revision(release) == before_revision + 1
    args = operator_deployment(release)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=debug" in args

    def replaced() -> str | None:
        pod = realpods.one_ready_pod(release, OPERATOR_NS, OPERATOR)["metadata"]["name"]
        return pod if pod != old_pod else None

    realpods.wait_for(replaced, timeout=120, what="the upgraded operator's pod Ready")
    after = {
        (ts["metadata"]["namespace"], ts["metadata"]["name"]): ts["metadata"]["generation"]
        for ts in realpods.kubectl_json(release, "get", "tradingsystems", "-A")["items"]
    }
    assert after == systems  # no spec was touched by the upgrade


def test_uninstall_after_the_systems_are_deleted_leaves_nothing_of_the_release(release):
    # The documented order: TradingSystems first, while the operator runs to halt them and clear their
    # finalizer (their engine and safety pods go with them); then the chart.
    for ns, name in all_systems(release):
        release.plane.kubectl("-n", ns, "delete", "tradingsystem", name, "--wait=false")
    realpods.wait_for(lambda: not all_systems(release), timeout=180, what="every TradingSystem deleted")

    code, out = helm(release, "uninstall", RELEASE, "--wait")
    assert code == 0, out

    def pods_gone() -> bool:
        pods = realpods.kubectl_json(release, "get", "pods", "-A", "-l", "app.kubernetes.io/part-of=quantzoo")
        return not pods["items"]

    realpods.wait_for(pods_gone, timeout=180, what="no QuantZoo pod left on the node")
    for kind in ("deployments", "services", "serviceaccounts", "networkpolicies"):
        assert not realpods.kubectl_json(release, "-n", OPERATOR_NS, "get", kind, "-l", INSTANCE)["items"], (
            kind
        )
    for kind in ("clusterroles", "clusterrolebindings"):
        assert not realpods.kubectl_json(release, "get", kind, "-l", INSTANCE)["items"], kind
    # Helm never deletes crds/: restored TradingSystems keep their schema.
    crds = realpods.kubectl_json(release, "get", "crds")["items"]
    assert "tradingsystems.trading.quantzoo.io" in {c["metadata"]["name"] for c in crds}
