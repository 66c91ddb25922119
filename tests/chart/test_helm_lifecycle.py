"""The chart's life against the real control plane with the real helm: install, `helm test`, a refused
upgrade, an upgrade that rolls the operator and widens its RBAC, and an uninstall that leaves nothing.

The operator runs as the chart's Pod would run it (hack/devcluster/podrunner.py: its ServiceAccount's token,
the chart's args and env), so every TradingSystem reconciled here was reconciled with exactly the RBAC the
chart granted. The module installs one release and walks it through its life; the tests are its stages and
run in file order.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION

from hack.devcluster.podrunner import LocalPod, PodRunner, wait_for
from tests.chart.conftest import CHART, Helm
from tests.conftest import Cluster

pytestmark = pytest.mark.slow

# Simulated pods have made-up IPs: the operator pushes only to local processes (none here).
LOOPBACK_ONLY = {"QUANTZOO_OPERATOR_PUSH_NETWORKS": "127.0.0.0/8"}
SPEC = {"mode": "paper", "symbols": ["AAPL"], "risk": {"maxOrderNotional": 10000}}


@dataclass
class Release:
    cluster: Cluster
    helm: Helm
    api: client.ApiClient
    runner: PodRunner
    name: str
    namespace: str
    watched: list[str]
    operator: LocalPod | None = None
    installed: bool = True
    systems: list[tuple[str, str]] = field(default_factory=list)

    def run(self, *args: str) -> tuple[int, str]:
        res = self.helm.run(*args, "--namespace", self.namespace, f"--kubeconfig={self.cluster.kubeconfig}")
        return res.returncode, res.stdout + res.stderr

    def values(self, watched: list[str], *extra: str) -> list[str]:
        return ["--set-json", f"watchNamespaces={json.dumps(watched)}", *extra]

    def revision(self) -> int:
        code, out = self.run("status", self.name, "-o", "json")
        assert code == 0, out
        return json.loads(out)["version"]

    def deployment(self) -> client.V1Deployment:
        apps = client.AppsV1Api(self.api)
        (deploy,) = apps.list_namespaced_deployment(
            self.namespace, label_selector=f"app.kubernetes.io/instance={self.name}"
        ).items
        return deploy

    def operator_pod(self) -> str:
        def running() -> str | None:
            pods = (
                client.CoreV1Api(self.api)
                .list_namespaced_pod(
                    self.namespace,
                    label_selector=f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=operator",
                )
                .items
            )
            live = [p for p in pods if not p.metadata.deletion_timestamp and p.status.phase == "Running"]
            return live[0].metadata.name if len(live) == 1 else None

        return wait_for(running, timeout=60, what="one running operator pod")

    def start_operator(self) -> LocalPod:
        """The chart's operator Pod, run as that Pod would run (replacing the previous one, as Recreate)."""
        self.stop_operator()
        pod = self.operator_pod()
        self.operator = self.runner.run(self.namespace, pod, annotate=False, extra_env=LOOPBACK_ONLY)
        self.operator.wait_http("/healthz", timeout=60)
        service = self.deployment().metadata.name  # the Service is named like the Deployment
        self.runner.expose(self.namespace, service, self.operator)
        return self.operator

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop(timeout=20)
            self.operator = None

    def create_system(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TradingSystem",
            "metadata": {"name": name, "namespace": namespace},
            "spec": SPEC,
        }
        client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        self.systems.append((namespace, name))

    def get_system(self, namespace: str, name: str) -> dict:
        return client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )

    def wait_ready(self, namespace: str, name: str) -> dict:
        def ready() -> dict | None:
            ts = self.get_system(namespace, name)
            status = ts.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            current = status.get("observedGeneration") == ts["metadata"]["generation"]
            return ts if current and conditions.get("Ready") == "True" else None

        return wait_for(ready, timeout=90, what=f"TradingSystem {namespace}/{name} Ready")


def make_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def release(cluster: Cluster, helm: Helm, kube_api: client.ApiClient) -> Iterator[Release]:
    home = make_namespace(kube_api, "qz-helm")
    team_a, team_b = make_namespace(kube_api, "team-a"), make_namespace(kube_api, "team-b")
    rel = Release(
        cluster=cluster,
        helm=helm,
        api=kube_api,
        runner=PodRunner(cluster.plane, cluster.kubeconfig, kube_api),
        name=f"qz-{uuid.uuid4().hex[:6]}",
        namespace=home,
        watched=[team_a, team_b],
    )
    code, out = rel.run("install", rel.name, str(CHART), "--wait", "--timeout", "120s", *rel.values([team_a]))
    assert code == 0, out
    try:
        yield rel
    finally:
        rel.stop_operator()
        rel.runner.stop_all()
        custom = client.CustomObjectsApi(kube_api)
        for ns, name in rel.systems:  # a failed stage must not leave a finalizer nobody clears
            with contextlib.suppress(client.ApiException):
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, name, {"metadata": {"finalizers": None}}
                )
        if rel.installed:
            rel.run("uninstall", rel.name, "--wait", "--timeout", "60s")
        core = client.CoreV1Api(kube_api)
        for ns in (home, team_a, team_b):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns)


def test_install_runs_the_operator_and_reconciles_a_tradingsystem(release: Release) -> None:
    assert release.revision() == 1
    deploy = release.deployment()
    assert deploy.status.available_replicas == 1
    args = deploy.spec.template.spec.containers[0].args
    assert f"--namespace={release.watched[0]}" in args
    assert "--standalone" in args

    release.start_operator()
    release.create_system(release.watched[0], "alpha")
    ts = release.wait_ready(release.watched[0], "alpha")
    assert ts["metadata"]["finalizers"] == ["trading.quantzoo.io/halt-before-delete"]
    apps = client.AppsV1Api(release.api)
    assert apps.read_namespaced_stateful_set("alpha-engine", release.watched[0]).spec.replicas == 1


def test_helm_test_passes_against_the_running_operator(release: Release) -> None:
    # `helm test` creates the hook Pod and waits for it to finish; the pod runner plays its kubelet.
    cmd = [
        release.helm.binary,
        "test",
        release.name,
        "--namespace",
        release.namespace,
        f"--kubeconfig={release.cluster.kubeconfig}",
        "--timeout",
        "120s",
    ]
    proc = subprocess.Popen(
        cmd, env=release.helm.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        core = client.CoreV1Api(release.api)

        def hook_pod() -> str | None:
            pods = core.list_namespaced_pod(
                release.namespace, label_selector="app.kubernetes.io/component=test"
            ).items
            return pods[0].metadata.name if pods else None

        pod = wait_for(hook_pod, timeout=60, what="the helm test Pod")
        code, output = release.runner.complete(release.namespace, pod, timeout=90)
        assert code == 0, output
        assert "ok: CRD tradingsystems.trading.quantzoo.io is Established" in output
        assert "ok: operator answers" in output
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "Phase:          Succeeded" in out


def test_an_upgrade_with_bad_values_is_refused_and_changes_nothing(release: Release) -> None:
    before = release.deployment()
    code, out = release.run(
        "upgrade",
        release.name,
        str(CHART),
        "--wait",
        *release.values(release.watched, "--set", "logLevel=chatty"),
    )
    assert code != 0
    assert "values don't meet the specifications of the schema" in out
    assert "at '/logLevel'" in out
    assert release.revision() == 1
    after = release.deployment()
    assert after.metadata.generation == before.metadata.generation
    rbac = client.RbacAuthorizationV1Api(release.api)
    assert not rbac.list_namespaced_role_binding(
        release.watched[1], label_selector=f"app.kubernetes.io/instance={release.name}"
    ).items


def test_upgrade_rolls_the_operator_and_widens_its_rbac(release: Release) -> None:
    old_pod = release.operator_pod()
    code, out = release.run(
        "upgrade",
        release.name,
        str(CHART),
        "--wait",
        "--timeout",
        "120s",
        *release.values(release.watched, "--set", "logLevel=debug"),
    )
    assert code == 0, out
    assert release.revision() == 2
    args = release.deployment().spec.template.spec.containers[0].args
    assert [a for a in args if a.startswith("--namespace=")] == [
        f"--namespace={ns}" for ns in release.watched
    ]
    assert "--log-level=debug" in args
    # Recreate: the old operator Pod is replaced, never two at once.
    assert release.operator_pod() != old_pod

    release.start_operator()
    # A system from before the upgrade is untouched; one in the newly watched namespace reconciles with the
    # Role the upgrade added.
    before = release.get_system(release.watched[0], "alpha")
    release.create_system(release.watched[1], "beta")
    release.wait_ready(release.watched[1], "beta")
    after = release.wait_ready(release.watched[0], "alpha")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_uninstall_after_the_systems_are_deleted_leaves_nothing_behind(release: Release) -> None:
    custom = client.CustomObjectsApi(release.api)
    # The documented order: TradingSystems first, while the operator runs to halt them and clear the
    # finalizer; then the chart.
    for ns, name in release.systems:
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    for ns, name in release.systems:

        def gone(ns: str = ns, name: str = name) -> bool:
            try:
                release.get_system(ns, name)
            except client.ApiException as exc:
                return exc.status == 404
            return False

        wait_for(gone, timeout=60, what=f"{ns}/{name} deleted through its finalizer")
    release.stop_operator()

    code, out = release.run("uninstall", release.name, "--wait", "--timeout", "60s")
    assert code == 0, out
    release.installed = False
    selector = f"app.kubernetes.io/instance={release.name}"
    core, apps = client.CoreV1Api(release.api), client.AppsV1Api(release.api)
    rbac = client.RbacAuthorizationV1Api(release.api)
    assert not apps.list_namespaced_deployment(release.namespace, label_selector=selector).items
    assert not core.list_namespaced_service(release.namespace, label_selector=selector).items
    assert not core.list_namespaced_service_account(release.namespace, label_selector=selector).items
    networking = client.NetworkingV1Api(release.api)
    assert not networking.list_namespaced_network_policy(release.namespace, label_selector=selector).items
    assert not rbac.list_cluster_role(label_selector=selector).items
    assert not rbac.list_cluster_role_binding(label_selector=selector).items
    for ns in release.watched:
        assert not rbac.list_namespaced_role(ns, label_selector=selector).items
        assert not rbac.list_namespaced_role_binding(ns, label_selector=selector).items
    # Helm never deletes crds/: other releases' (and restored) TradingSystems keep their schema.
    ext = client.ApiextensionsV1Api(release.api)
    assert ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").metadata.name
