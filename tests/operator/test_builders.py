"""Unit tests of the pure builders (no cluster, milliseconds)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from quantzoo_api.types import parse_spec
from quantzoo_operator.builders import (
    BuildOptions,
    System,
    admin_secret,
    build_children,
    config_map,
    engine_statefulset,
    network_policy,
    rbac,
    safety_deployment,
    services,
)

OWNER_LABELS = {
    "team": "equities",
    "app.kubernetes.io/instance": "argo-app",
    "app.kubernetes.io/name": "not-ours",
    "argocd.argoproj.io/instance": "argo-app",
    "helm.sh/chart": "x",
}


def system(spec: dict[str, Any] | None = None, **kwargs: Any) -> System:
    return System(
        namespace="trading",
        name="demo",
        uid="1234-uid",
        spec=parse_spec(spec or {}),
        labels=kwargs.pop("labels", OWNER_LABELS),
        generation=kwargs.pop("generation", 3),
    )


def by_kind(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["spec"]["template"]["spec"] for m in manifests if m["kind"] in ("StatefulSet", "Deployment")]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_every_child_is_owned_by_its_tradingsystem_and_labelled() -> None:
    manifests = build_children(system())
    assert len(manifests) == 15
    for m in manifests:
        assert m["metadata"]["namespace"] == "trading"
        assert m["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "trading.quantzoo.io/v1alpha1",
                "kind": "TradingSystem",
                "name": "demo",
                "uid": "1234-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "quantzoo"
        assert labels["app.kubernetes.io/managed-by"] == "quantzoo-operator"
        assert labels["trading.quantzoo.io/system"] == "demo"
        assert labels["team"] == "equities"


def test_argocd_and_instance_labels_are_never_copied() -> None:
    for m in [*build_children(system()), *admin_secret.build(system())]:
        labels = m["metadata"]["labels"]
        assert "app.kubernetes.io/instance" not in labels
        assert not [k for k in labels if k.startswith(("argocd.argoproj.io/", "helm.sh/"))]
        assert "annotations" not in m["metadata"]
    for m in build_children(system()):  # pod templates carry only the operator's own labels
        if m["kind"] in ("StatefulSet", "Deployment"):
            assert "team" not in m["spec"]["template"]["metadata"]["labels"]


def test_engine_is_a_statefulset_of_exactly_one_replica_with_its_governing_headless_service() -> None:
    children = by_kind(build_children(system()))
    sts = children[("StatefulSet", "demo-engine")]
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert sts["spec"]["serviceName"] == "demo-engine-headless"
    headless = children[("Service", "demo-engine-headless")]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert (
        sts["spec"]["template"]["metadata"]["labels"].items()
        >= sts["spec"]["selector"]["matchLabels"].items()
    )
    assert children[("Service", "demo-engine")]["spec"]["ports"][0]["port"] == 8001
    assert children[("Service", "demo-safety")]["spec"]["ports"][0]["port"] == 8888


def test_engine_pod_template() -> None:
    pod = engine_statefulset.pod_template(system())["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["quantzoo-engine"]
    assert container["ports"] == [{"name": "http", "containerPort": 8001, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["serviceAccountName"] == "demo-engine"
    env = env_of(container)
    assert env["QUANTZOO_CONFIG"]["value"] == "/etc/quantzoo/engine.json"
    # Tokens are mounted files (a rotation reaches the running process), never env values.
    assert env["ENGINE_ADMIN_TOKEN_FILE"]["value"] == "/var/run/secrets/quantzoo/admin-token/token"
    assert "ENGINE_ADMIN_TOKEN" not in env
    assert not [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["QUANTZOO_WATCH_KUBERNETES"]["value"] == "1"
    assert env["QUANTZOO_NAMESPACE"]["value"] == "trading"
    assert env["QUANTZOO_NAME"]["value"] == "demo"
    assert env["ENGINE_STATE_DIR"]["value"] == "/var/lib/quantzoo"
    assert "ALPACA_API_KEY" not in env
    assert "ALPACA_API_KEY_FILE" not in env
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {
        "config": "/etc/quantzoo",
        "state": "/var/lib/quantzoo",
        "tmp": "/tmp",
        "admin-token": "/var/run/secrets/quantzoo/admin-token",
    }
    assert {m["name"]: m.get("readOnly") for m in container["volumeMounts"]}["admin-token"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "demo-config"
    assert "emptyDir" in volumes["state"]
    assert volumes["admin-token"]["secret"] == {
        "secretName": "demo-engine-admin",
        "items": [{"key": "token", "path": "token"}],
        "defaultMode": 0o440,
    }


def test_alpaca_credentials_come_from_the_named_secret() -> None:
    spec = {"mode": "live", "broker": {"kind": "alpaca", "credentialsSecret": "alpaca-live"}}
    pod = engine_statefulset.pod_template(system(spec))["spec"]
    container = pod["containers"][0]
    env = env_of(container)
    # Mounted, so the engine picks up a rotated Secret without a restart.
    root = "/var/run/secrets/quantzoo/broker-credentials"
    assert env["ALPACA_API_KEY_FILE"]["value"] == f"{root}/ALPACA_API_KEY"
    assert env["ALPACA_API_SECRET_FILE"]["value"] == f"{root}/ALPACA_API_SECRET"
    assert "ALPACA_API_KEY" not in env
    assert "ALPACA_API_SECRET" not in env
    mount = {m["name"]: m for m in container["volumeMounts"]}["broker-credentials"]
    assert mount == {"name": "broker-credentials", "mountPath": root, "readOnly": True}
    volume = {v["name"]: v for v in pod["volumes"]}["broker-credentials"]["secret"]
    assert volume["secretName"] == "alpaca-live"
    assert [i["key"] for i in volume["items"]] == ["ALPACA_API_KEY", "ALPACA_API_SECRET"]


def test_extra_env_is_added_but_cannot_override_the_operators_own() -> None:
    spec = {
        "engine": {
            "env": [
                {"name": "LOG_LEVEL", "value": "DEBUG"},
                {"name": "ENGINE_ADMIN_TOKEN", "value": "x"},
                {"name": "ENGINE_ADMIN_TOKEN_FILE", "value": "/elsewhere"},
            ]
        }
    }
    container = engine_statefulset.pod_template(system(spec))["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    assert "ENGINE_ADMIN_TOKEN" not in names  # a token beside the mounted one is dropped
    assert names.count("ENGINE_ADMIN_TOKEN_FILE") == 1
    assert env_of(container)["ENGINE_ADMIN_TOKEN_FILE"]["value"].startswith("/var/run/secrets/quantzoo/")
    assert env_of(container)["LOG_LEVEL"]["value"] == "DEBUG"


def test_safety_pod_template() -> None:
    deploy = safety_deployment.build(system())
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["quantzoo-safety"]
    assert container["ports"][0]["containerPort"] == 8888
    env = env_of(container)
    assert env["SAFETY_API_TOKEN_FILE"]["value"] == "/var/run/secrets/quantzoo/api-token/token"
    assert env["ENGINE_ADMIN_TOKEN_FILE"]["value"] == "/var/run/secrets/quantzoo/engine-admin-token/token"
    assert "SAFETY_API_TOKEN" not in env
    assert "ENGINE_ADMIN_TOKEN" not in env
    pod = deploy["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"api-token": "demo-safety-token", "engine-admin-token": "demo-engine-admin"}
    ro = {m["name"]: m.get("readOnly") for m in container["volumeMounts"]}
    assert ro["api-token"] is True
    assert ro["engine-admin-token"] is True
    assert env["ENGINE_URL"]["value"] == "http://demo-engine.trading.svc:8001"
    assert env["QUANTZOO_CONFIG"]["value"] == "/etc/quantzoo/safety.json"
    assert (env["QUANTZOO_NAMESPACE"]["value"], env["QUANTZOO_NAME"]["value"]) == ("trading", "demo")
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "demo-safety"


@pytest.mark.parametrize("kind", ["StatefulSet", "Deployment"])
def test_every_pod_meets_the_restricted_pod_security_profile(kind: str) -> None:
    (workload,) = [m for m in build_children(system()) if m["kind"] == kind]
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert all("hostPort" not in p for p in container["ports"])
    assert all(set(v) & {"configMap", "emptyDir", "secret"} for v in pod["volumes"])


def test_config_map_renders_what_engine_and_safety_read() -> None:
    cm = config_map.build(system({"symbols": ["SPY"], "risk": {"maxOrderNotional": 5000}}))
    for key in ("engine.json", "safety.json"):
        doc = json.loads(cm["data"][key])
        assert set(doc) == {"namespace", "name", "spec"}
        assert (doc["namespace"], doc["name"]) == ("trading", "demo")
        assert doc["spec"]["symbols"] == ["SPY"]
        assert doc["spec"]["risk"]["maxOrderNotional"] == 5000
        assert doc["spec"]["risk"]["maxOrderQuantity"] == 1000  # defaults filled in, camelCase
        assert parse_spec(doc["spec"]) == parse_spec({"symbols": ["SPY"], "risk": {"maxOrderNotional": 5000}})


def test_live_fields_change_the_config_but_not_the_pod_template() -> None:
    before = system({"symbols": ["AAPL"], "risk": {"maxOrderNotional": 100}})
    after = system(
        {
            "symbols": ["MSFT", "SPY"],
            "risk": {"maxOrderNotional": 200},
            "killSwitch": {"engaged": True, "reason": "x"},
            "safety": {"autoTrip": {"maxRejectsPerMinute": 7}},
        }
    )
    assert config_map.build(before)["data"] != config_map.build(after)["data"]
    # The kill switch is in no child at all: the TradingSystem is its only source of truth.
    engaged = system(
        {"symbols": ["AAPL"], "risk": {"maxOrderNotional": 100}, "killSwitch": {"engaged": True}}
    )
    assert config_map.build(before)["data"] == config_map.build(engaged)["data"]
    assert engine_statefulset.pod_template(before) == engine_statefulset.pod_template(after)
    assert (
        safety_deployment.build(before)["spec"]["template"]
        == safety_deployment.build(after)["spec"]["template"]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"engine": {"image": "quantzoo/quantzoo:0.2.0"}},
        {"engine": {"resources": {"limits": {"memory": "1Gi"}}}},
        {"engine": {"env": [{"name": "X", "value": "1"}]}},
        {"strategy": {"name": "noop"}},
        {"marketData": {"seed": 7}},
        {"broker": {"initialCash": 5}},
    ],
)
def test_image_resources_env_and_restart_fields_roll_the_engine(change: dict[str, Any]) -> None:
    assert engine_statefulset.pod_template(system()) != engine_statefulset.pod_template(system(change))


def test_rbac_limits_each_workload_to_its_own_tradingsystem() -> None:
    children = by_kind(rbac.build(system()))
    engine_rule, lease_rule, lease_create = children[("Role", "demo-engine")]["rules"]
    assert engine_rule["resourceNames"] == ["demo"]
    assert engine_rule["verbs"] == ["get", "list", "watch"]
    # Its own trading Lease only (create cannot be limited by name; a new Lease fences nothing it holds).
    assert (lease_rule["resources"], lease_rule["resourceNames"]) == (["leases"], ["demo-trading"])
    assert lease_rule["verbs"] == ["get", "update"]
    assert (lease_create["resources"], lease_create["verbs"]) == (["leases"], ["create"])
    safety_rules = children[("Role", "demo-safety")]["rules"]
    ts_rule = next(r for r in safety_rules if r["resources"] == ["tradingsystems"])
    assert ts_rule["resourceNames"] == ["demo"]
    assert "patch" in ts_rule["verbs"]
    assert "delete" not in ts_rule["verbs"]
    # Its direct halt lists the engine pods (Ready or not) to reach each by pod IP; nothing more on pods.
    assert [r["verbs"] for r in safety_rules if r["resources"] == ["pods"]] == [["list"]]
    for kind, name in (("RoleBinding", "demo-engine"), ("RoleBinding", "demo-safety")):
        binding = children[(kind, name)]
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "trading"}]


def test_network_policy_admits_only_the_safety_pod_and_the_operator_to_the_admin_port() -> None:
    engine_np, safety_np = network_policy.build(system(), BuildOptions(operator_namespace="quantzoo-system"))
    (rule,) = engine_np["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8001, "protocol": "TCP"}]
    safety_peer, operator_peer = rule["from"]
    assert safety_peer == {"podSelector": {"matchLabels": services.safety(system())["spec"]["selector"]}}
    assert operator_peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "quantzoo-system"}
    }
    assert operator_peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert engine_np["spec"]["policyTypes"] == ["Ingress"]
    assert safety_np["spec"]["ingress"][0]["ports"] == [{"port": 8888, "protocol": "TCP"}]


def test_monitoring_namespaces_may_scrape() -> None:
    engine_np, _ = network_policy.build(system(), BuildOptions(monitoring_namespaces=("monitoring",)))
    peers = engine_np["spec"]["ingress"][0]["from"]
    assert peers[-1]["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]


def test_pod_disruption_budget_protects_the_single_engine() -> None:
    pdb = by_kind(build_children(system()))[("PodDisruptionBudget", "demo-engine")]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "engine"


def test_token_secrets_hold_a_fresh_random_token_each() -> None:
    engine_secret, safety_secret = admin_secret.build(system())
    assert engine_secret["metadata"]["name"] == "demo-engine-admin"
    assert safety_secret["metadata"]["name"] == "demo-safety-token"
    tokens = {base64.b64decode(s["data"]["token"]).decode() for s in (engine_secret, safety_secret)}
    assert len(tokens) == 2
    assert all(len(t) >= 40 for t in tokens)
    assert admin_secret.read_token(engine_secret) in tokens
    assert admin_secret.read_token({"data": {}}) is None
