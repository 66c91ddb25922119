"""The operator against the real control plane: children, status, updates, drift, deletion, scope."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from kubernetes import client, watch
from quantzoo_operator.settings import ANNOTATION_PREFIX, DIFF_BASE_KEY

from tests.clusters import Cluster
from tests.operator.harness import (
    TS,
    OperatorProcess,
    release_finalizers,
    running_with_standin,
    start_operator,
    wait_for,
)

CHILDREN = {
    ("StatefulSet", "demo-engine"),
    ("Deployment", "demo-safety"),
    ("Service", "demo-engine"),
    ("Service", "demo-engine-headless"),
    ("Service", "demo-safety"),
    ("ConfigMap", "demo-config"),
    ("ServiceAccount", "demo-engine"),
    ("ServiceAccount", "demo-safety"),
    ("Role", "demo-engine"),
    ("Role", "demo-safety"),
    ("RoleBinding", "demo-engine"),
    ("RoleBinding", "demo-safety"),
    ("PodDisruptionBudget", "demo-engine"),
    ("NetworkPolicy", "demo-engine"),
    ("NetworkPolicy", "demo-safety"),
    ("Secret", "demo-engine-admin"),
    ("Secret", "demo-safety-token"),
}


def children(api: client.ApiClient, namespace: str) -> dict[tuple[str, str], object]:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rbac, policy, net = (
        client.RbacAuthorizationV1Api(api),
        client.PolicyV1Api(api),
        client.NetworkingV1Api(api),
    )
    found: dict[tuple[str, str], object] = {}
    for kind, items in [
        ("StatefulSet", apps.list_namespaced_stateful_set(namespace).items),
        ("Deployment", apps.list_namespaced_deployment(namespace).items),
        ("Service", core.list_namespaced_service(namespace).items),
        ("ConfigMap", core.list_namespaced_config_map(namespace).items),
        ("ServiceAccount", core.list_namespaced_service_account(namespace).items),
        ("Secret", core.list_namespaced_secret(namespace).items),
        ("Role", rbac.list_namespaced_role(namespace).items),
        ("RoleBinding", rbac.list_namespaced_role_binding(namespace).items),
        ("PodDisruptionBudget", policy.list_namespaced_pod_disruption_budget(namespace).items),
        ("NetworkPolicy", net.list_namespaced_network_policy(namespace).items),
    ]:
        for item in items:
            if item.metadata.owner_references:
                found[(kind, item.metadata.name)] = item
    return found


def test_create_builds_every_child_owned_by_the_tradingsystem(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    created = ts.create(
        namespace,
        "demo",
        labels={"team": "equities", "app.kubernetes.io/instance": "argo-app", "argocd.argoproj.io/x": "y"},
        annotations={"argocd.argoproj.io/tracking-id": "app:trading.quantzoo.io/TradingSystem:ns/demo"},
    )
    uid = created["metadata"]["uid"]
    found = wait_for(
        lambda: (c := children(kube_api, namespace)) and set(c) >= CHILDREN and c, what="children"
    )
    assert set(found) == CHILDREN
    for (kind, name), obj in found.items():
        (owner,) = obj.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("TradingSystem", "demo", uid), (kind, name)
        assert owner.controller is True
        assert owner.block_owner_deletion is True
        labels = obj.metadata.labels or {}
        assert labels["app.kubernetes.io/managed-by"] == "quantzoo-operator"
        assert labels["team"] == "equities"
        assert "app.kubernetes.io/instance" not in labels
        assert not any(k.startswith("argocd.argoproj.io/") for k in labels)
        assert not any(k.startswith("argocd.argoproj.io/") for k in (obj.metadata.annotations or {}))

    sts = found[("StatefulSet", "demo-engine")]
    assert sts.spec.replicas == 1
    assert sts.spec.service_name == "demo-engine-headless"
    assert found[("Service", "demo-engine-headless")].spec.cluster_ip == "None"
    container = sts.spec.template.spec.containers[0]
    env = {e.name: e for e in container.env}
    assert env["QUANTZOO_CONFIG"].value == "/etc/quantzoo/engine.json"
    assert env["ENGINE_ADMIN_TOKEN_FILE"].value == "/var/run/secrets/quantzoo/admin-token/token"
    volumes = {v.name: v for v in sts.spec.template.spec.volumes}
    assert volumes["admin-token"].secret.secret_name == "demo-engine-admin"
    cm = found[("ConfigMap", "demo-config")]
    doc = json.loads(cm.data["engine.json"])
    assert (doc["namespace"], doc["name"], doc["spec"]["symbols"]) == (namespace, "demo", ["AAPL", "MSFT"])

    # Status: Ready follows the pods (kwok makes them Running and Ready).
    ready = ts.wait_ready(namespace, "demo")
    assert ready["reason"] == "AllComponentsReady"
    status = ts.get(namespace, "demo")["status"]
    assert status["observedGeneration"] == created["metadata"]["generation"]
    assert status["phase"] == "Running"
    assert status["engine"] == {"replicas": 1, "readyReplicas": 1}
    types = {c["type"]: c for c in status["conditions"]}
    assert set(types) == {"Ready", "EngineReady", "SafetyReady", "KillSwitchEngaged", "Degraded"}
    for cond in types.values():
        assert cond["lastTransitionTime"]
        assert cond["reason"]
        assert "observedGeneration" in cond
    assert types["Degraded"]["status"] == "False"
    assert types["KillSwitchEngaged"]["status"] == "False"
    # Progress is kept in annotations, so status holds only what a person reads.
    assert set(status) == {"observedGeneration", "phase", "conditions", "engine", "killSwitch"}
    ts.wait_event(namespace, "demo", "ChildrenCreated")


def _set_pod_ready(api: client.ApiClient, namespace: str, pod: str, ready: bool) -> None:
    value = "True" if ready else "False"
    client.CoreV1Api(api).patch_namespaced_pod_status(
        pod,
        namespace,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": value},
                    {"type": "ContainersReady", "status": value},
                ]
            }
        },
    )


def test_ready_follows_engine_pod_readiness(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    pod = ts.engine_pod(namespace, "demo").metadata.name

    _set_pod_ready(kube_api, namespace, pod, False)
    ready = ts.wait_condition(namespace, "demo", "Ready", "False", reason="EngineNotReady")
    assert "0/1" in ready["message"]
    assert ts.condition(namespace, "demo", "EngineReady")["status"] == "False"
    assert ts.get(namespace, "demo")["status"]["phase"] == "Pending"
    ts.wait_event(namespace, "demo", "EngineNotReady")

    _set_pod_ready(kube_api, namespace, pod, True)
    ts.wait_condition(namespace, "demo", "Ready", "True", reason="AllComponentsReady")
    assert ts.get(namespace, "demo")["status"]["phase"] == "Running"


def test_risk_limit_and_symbol_changes_reach_the_config_without_restarting_the_engine(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    pod = ts.engine_pod(namespace, "demo")
    template_before = apps.read_namespaced_stateful_set("demo-engine", namespace).spec.template.to_dict()

    updated = ts.patch(namespace, "demo", {"spec": {"risk": {"maxOrderNotional": 1234}, "symbols": ["SPY"]}})

    def config_updated() -> dict | None:
        doc = json.loads(core.read_namespaced_config_map("demo-config", namespace).data["engine.json"])
        return doc if doc["spec"]["risk"]["maxOrderNotional"] == 1234 else None

    doc = wait_for(config_updated, what="the new risk limit in engine.json")
    assert doc["spec"]["symbols"] == ["SPY"]
    wait_for(
        lambda: (
            ts.get(namespace, "demo")["status"].get("observedGeneration") == updated["metadata"]["generation"]
        ),
        what="observedGeneration to follow",
    )
    ts.wait_event(namespace, "demo", "ConfigUpdated")
    # The pod template did not change, so the engine pod is the same pod.
    assert (
        apps.read_namespaced_stateful_set("demo-engine", namespace).spec.template.to_dict() == template_before
    )
    (same,) = [p for p in ts.engine_pods(namespace, "demo") if p.metadata.deletion_timestamp is None]
    assert same.metadata.uid == pod.metadata.uid


def test_after_an_operator_restart_a_spec_change_is_an_update_not_a_creation(
    cluster: Cluster, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    """kopf's diff base is a digest of the handled spec (quantzoo_operator/diffbase.py), not a copy: a new
    operator process, which never saw the handled spec, resumes the unchanged system and takes the next
    change as an update (a creation would re-run the create handlers)."""
    core = client.CoreV1Api(kube_api)
    first = start_operator(cluster, [namespace])
    try:
        ts.create(namespace, "demo")
        ts.wait_ready(namespace, "demo")
        stored = ts.get(namespace, "demo")["metadata"]["annotations"][f"{ANNOTATION_PREFIX}/{DIFF_BASE_KEY}"]
        assert stored.startswith("sha256:")
    finally:
        first.stop()
    second = start_operator(cluster, [namespace])
    try:
        wait_for(
            lambda: any("Resuming is processed" in line.get("message", "") for line in second.log_lines()),
            what="the restarted operator to resume the system",
        )
        ts.patch(namespace, "demo", {"spec": {"risk": {"maxOrderNotional": 4321}}})
        wait_for(
            lambda: (
                json.loads(core.read_namespaced_config_map("demo-config", namespace).data["engine.json"])[
                    "spec"
                ]["risk"]["maxOrderNotional"]
                == 4321
            ),
            what="the change in engine.json",
        )

        def processed() -> list[str] | None:
            lines = [
                line["message"] for line in second.log_lines() if "is processed" in line.get("message", "")
            ]
            return lines if any(m.startswith("Updating is processed") for m in lines) else None

        assert not any(m.startswith("Creation is processed") for m in wait_for(processed, what="an update"))
    finally:
        second.stop()
        release_finalizers(kube_api, namespace)


def test_image_change_rolls_the_single_engine_pod_and_never_runs_two(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    old = ts.engine_pod(namespace, "demo")

    core = client.CoreV1Api(kube_api)
    live: dict[str, bool] = {}  # pod uid -> not terminating
    most = {"value": 0}
    started, stop = threading.Event(), threading.Event()
    w = watch.Watch()

    def observe() -> None:
        started.set()
        with contextlib.suppress(Exception):  # the stream breaks when the test stops it
            _observe()

    def _observe() -> None:
        for event in w.stream(
            core.list_namespaced_pod,
            namespace,
            label_selector="app.kubernetes.io/component=engine,trading.quantzoo.io/system=demo",
            timeout_seconds=60,
        ):
            pod = event["object"]
            if event["type"] == "DELETED":
                live.pop(pod.metadata.uid, None)
            else:
                live[pod.metadata.uid] = pod.metadata.deletion_timestamp is None
            most["value"] = max(most["value"], sum(live.values()))
            if stop.is_set():
                return

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    started.wait(5)
    time.sleep(0.2)  # the watch's initial ADDED events
    ts.patch(namespace, "demo", {"spec": {"engine": {"image": "quantzoo/quantzoo:0.2.0"}}})

    def rolled() -> client.V1Pod | None:
        for pod in ts.engine_pods(namespace, "demo"):
            ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready") == "True"
            if (
                pod.metadata.uid != old.metadata.uid
                and pod.spec.containers[0].image.endswith(":0.2.0")
                and ready
            ):
                return pod
        return None

    new = wait_for(rolled, 60, what="the new engine pod")
    ts.wait_condition(namespace, "demo", "Ready", "True")
    ts.wait_event(namespace, "demo", "EngineRollout")
    stop.set()
    w.stop()
    watcher.join(5)
    assert new.metadata.name == old.metadata.name == "demo-engine-0"
    assert most["value"] == 1, "two engine pods were alive (not terminating) at the same time"


def test_drift_in_children_is_restored(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    original_cm = core.read_namespaced_config_map("demo-config", namespace).data

    # Someone edits fields the operator owns...
    apps.patch_namespaced_stateful_set(
        "demo-engine",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "evil/engine:latest"}]}}}},
        field_manager="kubectl-edit",
    )
    core.patch_namespaced_config_map(
        "demo-config", namespace, {"data": {"engine.json": "{}"}}, field_manager="kubectl-edit"
    )
    # ...and deletes children.
    core.delete_namespaced_service("demo-safety", namespace)
    client.PolicyV1Api(kube_api).delete_namespaced_pod_disruption_budget("demo-engine", namespace)

    wait_for(
        lambda: (
            apps.read_namespaced_stateful_set("demo-engine", namespace).spec.template.spec.containers[0].image
            == "quantzoo/quantzoo:0.1.0"
        ),
        what="the engine image restored",
    )
    wait_for(
        lambda: core.read_namespaced_config_map("demo-config", namespace).data == original_cm,
        what="the ConfigMap restored",
    )
    wait_for(
        lambda: core.read_namespaced_service("demo-safety", namespace), what="the safety Service recreated"
    )
    wait_for(
        lambda: client.PolicyV1Api(kube_api).read_namespaced_pod_disruption_budget("demo-engine", namespace),
        what="the PDB recreated",
    )
    ts.wait_event(namespace, "demo", "DriftCorrected")
    restored = ts.wait_event(namespace, "demo", "ChildRestored")
    assert "was deleted" in restored.message


def test_a_bad_spec_is_refused_by_the_api_server(ts: TS, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        ts.create(namespace, "bad", {"mode": "live", "broker": {"kind": "simulated"}})
    assert err.value.status == 422
    assert "mode live needs a real broker" in err.value.body
    with pytest.raises(client.ApiException) as err:
        ts.create(namespace, "bad", {"risk": {"maxOrderNotional": -1}})
    assert err.value.status == 422


def test_pods_pass_the_restricted_pod_security_profile(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )
    # The profile is enforced: a pod that breaks it is refused.
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": "rogue"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        )
    assert err.value.status == 403
    assert "restricted" in err.value.body

    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    pods = core.list_namespaced_pod(namespace, label_selector="trading.quantzoo.io/system=demo").items
    assert {p.metadata.labels["app.kubernetes.io/component"] for p in pods} == {"engine", "safety"}


def test_garbage_collection_removes_children_when_the_tradingsystem_goes(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient, engines
) -> None:

    running_with_standin(ts, engines, namespace, "demo")  # the finalizer halts it before the children go
    assert set(children(kube_api, namespace)) == CHILDREN

    ts.delete(namespace, "demo")
    wait_for(lambda: ts.get(namespace, "demo") is None, what="the TradingSystem gone")
    wait_for(lambda: not children(kube_api, namespace), 60, what="garbage collection of every child")
    wait_for(lambda: not ts.engine_pods(namespace, "demo"), 60, what="the engine pod gone")
