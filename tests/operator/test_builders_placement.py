"""Unit tests of what a platform team sets on the operand pods (no cluster, milliseconds): the default image
from the operator (the chart's), placement fields over chart-level defaults, the safety pod's preference
for a node other than the engine's, and the safety API's optional node port."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from quantzoo_api.types import Placement, parse_spec
from quantzoo_operator.builders import (
    BuildOptions,
    System,
    engine_statefulset,
    network_policy,
    safety_deployment,
    services,
)

DIGEST_IMAGE = "registry.example/quantzoo@sha256:" + "a" * 64
ENGINE_SELECTOR = {
    "app.kubernetes.io/name": "quantzoo",
    "app.kubernetes.io/component": "engine",
    "trading.quantzoo.io/system": "demo",
}


def system(spec: dict[str, Any] | None = None) -> System:
    return System(namespace="trading", name="demo", uid="uid", spec=parse_spec(spec or {}))


def engine_pod(spec: dict[str, Any] | None = None, options: BuildOptions | None = None) -> dict[str, Any]:
    return engine_statefulset.build(system(spec), options)["spec"]["template"]["spec"]


def safety_pod(spec: dict[str, Any] | None = None, options: BuildOptions | None = None) -> dict[str, Any]:
    return safety_deployment.build(system(spec), options)["spec"]["template"]["spec"]


def test_operand_image_is_the_operators_default_unless_the_system_names_one() -> None:
    options = BuildOptions(default_image=DIGEST_IMAGE, default_image_pull_policy="Always")
    for pod in (engine_pod(None, options), safety_pod(None, options)):
        assert pod["containers"][0]["image"] == DIGEST_IMAGE
        assert pod["containers"][0]["imagePullPolicy"] == "Always"
    own = {"image": "team/strategies:1.2", "imagePullPolicy": "Never"}
    pod = engine_pod({"engine": own}, options)
    assert (pod["containers"][0]["image"], pod["containers"][0]["imagePullPolicy"]) == (
        "team/strategies:1.2",
        "Never",
    )
    assert safety_pod({"engine": own}, options)["containers"][0]["image"] == DIGEST_IMAGE


def test_a_new_default_image_rolls_the_engine() -> None:
    """An upgrade of the chart's image reaches every engine that follows the default."""
    before = engine_statefulset.pod_template(system(), BuildOptions(default_image="q/q:1"))
    after = engine_statefulset.pod_template(system(), BuildOptions(default_image="q/q:2"))
    assert before != after


def test_no_placement_fields_by_default() -> None:
    pod = engine_pod()
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert key not in pod


PLACEMENT = {
    "imagePullSecrets": [{"name": "registry-creds"}],
    "nodeSelector": {"node-role.example/trading": "true"},
    "tolerations": [{"key": "trading", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    },
    "priorityClassName": "trading-critical",
}


@pytest.mark.parametrize("workload", ["engine", "safety"])
def test_the_systems_placement_reaches_the_pod(workload: str) -> None:
    pod = (engine_pod if workload == "engine" else safety_pod)({workload: PLACEMENT})
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["nodeSelector"] == {"node-role.example/trading": "true"}
    assert pod["tolerations"] == [{"key": "trading", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"]["nodeAffinity"] == PLACEMENT["affinity"]["nodeAffinity"]
    assert pod["priorityClassName"] == "trading-critical"


def test_chart_defaults_fill_only_the_fields_a_system_leaves_unset() -> None:
    defaults = Placement.model_validate(PLACEMENT)
    options = BuildOptions(operand_placement=defaults)
    pod = engine_pod({"engine": {"nodeSelector": {"pool": "fast"}, "tolerations": []}}, options)
    assert pod["nodeSelector"] == {"pool": "fast"}  # the system's own
    assert "tolerations" not in pod  # set empty by the system: no default tolerations
    assert pod["priorityClassName"] == "trading-critical"  # from the defaults
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]


def test_safety_prefers_a_node_other_than_its_engines() -> None:
    for options in (None, BuildOptions(operand_placement=Placement.model_validate(PLACEMENT))):
        affinity = safety_pod(None, options)["affinity"]
        (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"] == {
            "labelSelector": {"matchLabels": ENGINE_SELECTOR},
            "topologyKey": "kubernetes.io/hostname",
        }
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]
    assert "affinity" not in engine_pod()


def test_safety_anti_affinity_keeps_the_systems_own_terms() -> None:
    own = {"weight": 10, "podAffinityTerm": {"labelSelector": {}, "topologyKey": "zone"}}
    required = [{"labelSelector": {"matchLabels": {"x": "y"}}, "topologyKey": "zone"}]
    anti = {
        "preferredDuringSchedulingIgnoredDuringExecution": [own],
        "requiredDuringSchedulingIgnoredDuringExecution": required,
    }
    affinity = safety_pod({"safety": {"affinity": {"podAntiAffinity": anti}}})["affinity"]["podAntiAffinity"]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == required
    preferred = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0] == own
    assert preferred[1]["podAffinityTerm"]["labelSelector"] == {"matchLabels": ENGINE_SELECTOR}


def test_safety_service_is_cluster_ip_unless_exposed() -> None:
    assert services.safety(system())["spec"]["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in services.safety(system())["spec"]
    _, safety_np = network_policy.build(system())
    assert not [p for p in safety_np["spec"]["ingress"][0]["from"] if "ipBlock" in p]


def test_exposed_safety_api_is_a_node_port_admitted_only_from_its_source_ranges() -> None:
    spec = {"safety": {"expose": {"nodePort": 30888, "sourceRanges": ["10.245.0.1/32", "192.168.10.0/24"]}}}
    svc = services.safety(system(spec))["spec"]
    assert svc["type"] == "NodePort"
    assert svc["ports"] == [
        {"name": "http", "port": 8888, "targetPort": "http", "protocol": "TCP", "nodePort": 30888}
    ]
    # The client's own address reaches the pod, so the policy's ipBlock can judge it.
    assert svc["externalTrafficPolicy"] == "Local"
    _, safety_np = network_policy.build(system(spec))
    (rule,) = safety_np["spec"]["ingress"]
    blocks = [p["ipBlock"] for p in rule["from"] if "ipBlock" in p]
    assert blocks == [{"cidr": "10.245.0.1/32"}, {"cidr": "192.168.10.0/24"}]
    assert rule["ports"] == [{"port": 8888, "protocol": "TCP"}]
    engine_np, _ = network_policy.build(system(spec))
    assert not [p for p in engine_np["spec"]["ingress"][0]["from"] if "ipBlock" in p], "never the engine"


def test_load_balancer_gets_the_source_ranges_too() -> None:
    spec = {"safety": {"expose": {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"]}}}
    svc = services.safety(system(spec))["spec"]
    assert svc["type"] == "LoadBalancer"
    assert svc["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert "nodePort" not in svc["ports"][0]


@pytest.mark.parametrize(
    ("expose", "message"),
    [
        ({"sourceRanges": ["not-a-cidr"]}, "is not a CIDR"),
        ({"sourceRanges": []}, "at least 1 item"),
        ({"sourceRanges": ["10.0.0.0/8"], "nodePort": 80}, "greater than or equal to 30000"),
    ],
)
def test_bad_expose_is_refused_by_the_model(expose: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_spec({"safety": {"expose": expose}})


@pytest.mark.parametrize(
    ("affinity", "message"),
    [
        ({"podAntiAffinity": "yes"}, "affinity.podAntiAffinity must be an object"),
        (
            {"nodeAfinity": {}},
            "affinity has only nodeAffinity, podAffinity, podAntiAffinity, not 'nodeAfinity'",
        ),
    ],
)
def test_bad_affinity_is_refused_by_the_model(affinity: dict[str, Any], message: str) -> None:
    """The CRD checks only the keys (a preserved object): the operator refuses a non-object value before
    it writes any pod template (an InvalidSpec Degraded condition naming it)."""
    with pytest.raises(ValidationError, match=message):
        parse_spec({"engine": {"affinity": affinity}})
