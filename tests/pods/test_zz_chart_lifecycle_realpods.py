"""The chart's life on real pods, after every other real-pod test (the file sorts last in tests/pods):
install reconciles a system with the chart's image, `helm test` runs its hook Pod on the real kubelet, a bad
upgrade is refused and changes nothing, an upgrade to a list of watched namespaces rolls the operator's pod,
narrows its RBAC to Roles and still reconciles, and an uninstall after the systems are deleted leaves
nothing of the release behind.

It walks the session's own release (tests/pods/conftest.py): a second release on the same node would start
a second operator reconciling the same TradingSystems. The stages run in file order; the uninstall is the
last, and nothing after tests/pods uses the release. Whatever the other real-pod tests left (the `demo`
system, engaged; namespaces still terminating) is part of what the upgrade must keep and the uninstall must
clear: that is how a namespace holding an engaged system was found never to finish deleting.
"""

from __future__ import annotations

import json

import pytest

from hack.devcluster import node
from tests.pods import ownsystem, realpods
from tests.pods.realpods import OPERATOR_NS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "quantzoo"
CHART = str(node.REPO / "charts" / "quantzoo")
OPERATOR = "app.kubernetes.io/component=operator"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
NS_A, NS_B = "lifecycle-a", "lifecycle-b"
SPEC = {"symbols": ["AAPL"], "risk": {"maxOrderNotional": 10000}}  # no image: the chart's applies
FINALIZER = "trading.quantzoo.io/halt-before-delete"


def helm(cluster: node.RealCluster, *args: str) -> tuple[int, str]:
    """The real helm on the session release's namespace (each caller passes --timeout where it applies)."""
    res = node.run(
        str(cluster.plane.bin_dir / "helm"),
        *args,
        *("--kubeconfig", str(cluster.kubeconfig), "-n", OPERATOR_NS),
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


def operator_args(cluster: node.RealCluster) -> list[str]:
    return operator_deployment(cluster)["spec"]["template"]["spec"]["containers"][0]["args"]


def systems(cluster: node.RealCluster) -> dict[tuple[str, str], dict]:
    items = realpods.kubectl_json(cluster, "get", "tradingsystems", "-A")["items"]
    return {(ts["metadata"]["namespace"], ts["metadata"]["name"]): ts for ts in items}


def ready_condition(ts: dict) -> bool:
    status = ts.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return (
        status.get("observedGeneration") == ts["metadata"]["generation"] and conditions.get("Ready") == "True"
    )


def labelled(cluster: node.RealCluster, kind: str, namespace: str | None = None) -> list[dict]:
    scope = ("-n", namespace) if namespace else ()
    return realpods.kubectl_json(cluster, *scope, "get", kind, "-l", INSTANCE)["items"]


def test_install_runs_the_operator_and_reconciles_a_system_with_the_charts_image(release):
    assert revision(release) == 1
    deploy = operator_deployment(release)
    assert deploy["status"].get("availableReplicas") == 1
    args = operator_args(release)
    assert "--standalone" in args
    assert not [a for a in args if a.startswith("--namespace=")]  # every namespace

    ownsystem.namespace(release, NS_A)
    ownsystem.apply(release, NS_A, "alpha", SPEC)
    engine = ownsystem.ready_pod(release, NS_A, "alpha", "engine")
    ownsystem.ready_pod(release, NS_A, "alpha", "safety")
    assert engine["spec"]["containers"][0]["image"] == release.node.app_image
    ts = realpods.wait_for(
        lambda: (t := systems(release).get((NS_A, "alpha"))) and ready_condition(t) and t,
        timeout=60,
        what="alpha Ready",
    )
    assert ts["metadata"]["finalizers"] == [FINALIZER]


def test_helm_test_runs_its_hook_pod_on_the_real_kubelet(release):
    # The hook Pod exits non-zero unless the CRD is Established and the operator's Service answers
    # /healthz through the operator's NetworkPolicy; it is deleted once it succeeded (its delete policy),
    # so its logs are not there to read afterwards.
    code, out = helm(release, "test", RELEASE, "--timeout", "180s")
    assert code == 0, out
    assert "Phase:          Succeeded" in out
    assert "Phase:          Failed" not in out
    assert not realpods.pods(release, OPERATOR_NS, "app.kubernetes.io/component=test")


def test_an_upgrade_with_bad_values_is_refused_and_changes_nothing(release):
    before_revision, before = revision(release), operator_deployment(release)
    code, out = helm(
        release,
        *("upgrade", RELEASE, CHART, "--reuse-values", "--set", "logLevel=chatty"),
        *("--wait", "--timeout", "120s"),
    )
    assert code != 0
    assert "values don't meet the specifications of the schema" in out
    assert "at '/logLevel'" in out
    assert revision(release) == before_revision
    assert operator_deployment(release)["metadata"]["generation"] == before["metadata"]["generation"]


def test_an_upgrade_to_listed_namespaces_rolls_the_operator_and_keeps_every_system(release):
    old_pod = realpods.one_ready_pod(release, OPERATOR_NS, OPERATOR)["metadata"]["name"]
    before = systems(release)
    ownsystem.namespace(release, NS_B)
    # Every namespace that holds a system stays watched (or its finalizer would have nobody to clear it).
    watched = sorted({ns for ns, _ in before} | {NS_A, NS_B})
    before_revision = revision(release)
    code, out = helm(
        release,
        *("upgrade", RELEASE, CHART, "--reuse-values", "--set", "logLevel=debug"),
        *("--set-json", f"watchNamespaces={json.dumps(watched)}", "--wait", "--timeout", "180s"),
    )
    assert code == 0, out
    assert revision(release) == before_revision + 1
    args = operator_args(release)
    assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={ns}" for ns in watched]
    assert "--log-level=debug" in args
    for ns in watched:  # a Role per watched namespace instead of the cluster-wide rules
        assert [r["metadata"]["name"] for r in labelled(release, "roles", ns)], ns
        assert labelled(release, "rolebindings", ns), ns

    def replaced() -> str | None:
        pod = realpods.one_ready_pod(release, OPERATOR_NS, OPERATOR)["metadata"]["name"]
        return pod if pod != old_pod else None

    realpods.wait_for(replaced, timeout=120, what="the upgraded operator's pod Ready")

    # A system in the newly watched namespace reconciles with the Role the upgrade added.
    ownsystem.apply(release, NS_B, "beta", SPEC)
    ownsystem.ready_pod(release, NS_B, "beta", "engine")
    realpods.wait_for(
        lambda: ready_condition(systems(release)[(NS_B, "beta")]), timeout=90, what="beta Ready"
    )
    after = systems(release)
    for key, ts in before.items():  # no spec was touched by the upgrade
        spec_before, spec_after = dict(ts["spec"]), dict(after[key]["spec"])
        switch_before, switch_after = spec_before.pop("killSwitch", None), spec_after.pop("killSwitch", None)
        assert spec_after == spec_before, key
        if switch_after != switch_before:
            # Only the safety pod's watchdog may have written (a CI run saw alpha's generation go 1 -> 2 here
            # under the suite's load): an engage of its own, whose reason the message shows.
            assert (switch_after or {}).get("operator") == "safety-watchdog", (key, switch_after)
            print(f"{key}: engaged by the watchdog during the upgrade: {switch_after.get('reason')!r}")
    assert ready_condition(after[(NS_A, "alpha")])


def test_uninstall_after_the_systems_are_deleted_leaves_nothing_of_the_release(release):
    # The documented order (charts/quantzoo/README.md): TradingSystems first, while the operator runs to
    # halt them and clear their finalizer (their engine and safety pods go with them); then the chart.
    watched = [a.split("=", 1)[1] for a in operator_args(release) if a.startswith("--namespace=")]
    release.plane.kubectl("delete", "tradingsystems", "--all", "-A", "--wait=false")
    realpods.wait_for(lambda: not systems(release), timeout=120, what="every TradingSystem deleted")

    code, out = helm(release, "uninstall", RELEASE, "--wait", "--timeout", "120s")
    assert code == 0, out

    def pods_gone() -> bool:
        pods = realpods.kubectl_json(release, "get", "pods", "-A", "-l", "app.kubernetes.io/part-of=quantzoo")
        return not pods["items"]

    realpods.wait_for(pods_gone, timeout=120, what="no QuantZoo pod left on the node")
    for kind in ("deployments", "services", "serviceaccounts", "networkpolicies"):
        assert not labelled(release, kind, OPERATOR_NS), kind
    for kind in ("clusterroles", "clusterrolebindings"):
        assert not labelled(release, kind), kind
    for ns in watched:
        assert not labelled(release, "roles", ns), ns
        assert not labelled(release, "rolebindings", ns), ns
    # Helm never deletes crds/: restored TradingSystems keep their schema.
    crds = realpods.kubectl_json(release, "get", "crds")["items"]
    assert "tradingsystems.trading.quantzoo.io" in {c["metadata"]["name"] for c in crds}
    for ns in (NS_A, NS_B):
        release.plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
