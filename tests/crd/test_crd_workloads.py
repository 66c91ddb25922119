"""spec.engine / spec.safety against a real kube-apiserver: image by digest, no image default in the CRD
(the operator's default, the chart's image, applies), placement fields and the safety API's expose,
each bad value refused with a message naming it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION

DIGEST_IMAGE = "registry.example:5000/team/quantzoo@sha256:" + "0123456789abcdef" * 4
PLACEMENT = {
    "imagePullSecrets": [{"name": "registry-creds"}],
    "nodeSelector": {"node-role.example/trading": "true"},
    "tolerations": [
        {"key": "trading", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ],
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


def _ts(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": {"symbols": ["AAPL"], **spec},
    }


@pytest.fixture
def crs(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


def _create(crs: client.CustomObjectsApi, ns: str, body: dict) -> dict:
    return crs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, dry_run="All")


def test_no_image_default_in_the_crd(crs, namespace):
    """Unset, the image stays unset: the operator fills in its default (the chart's image)."""
    spec = _create(crs, namespace, _ts("plain", {}))["spec"]
    for workload in ("engine", "safety"):
        assert "image" not in spec[workload]
        assert "imagePullPolicy" not in spec[workload]


def test_digest_image_and_placement_are_accepted_and_kept(crs, namespace):
    workload = {"image": DIGEST_IMAGE, "imagePullPolicy": "Always", **PLACEMENT}
    expose = {"type": "NodePort", "nodePort": 30888, "sourceRanges": ["10.245.0.1/32", "2001:db8::/64"]}
    spec = _create(
        crs, namespace, _ts("placed", {"engine": workload, "safety": {**workload, "expose": expose}})
    )["spec"]
    assert {k: spec["engine"][k] for k in workload} == workload
    assert spec["safety"]["expose"] == expose


def _with(workload: str, field: str, value: Any) -> dict[str, Any]:
    return {workload: {field: value}}


INVALID = [
    ("image-space", _with("engine", "image", "quantzoo quantzoo"), "spec.engine.image"),
    ("pull-policy", _with("safety", "imagePullPolicy", "Sometimes"), "spec.safety.imagePullPolicy"),
    (
        "pull-secret-name",
        _with("engine", "imagePullSecrets", [{"name": "Bad_Name"}]),
        "spec.engine.imagePullSecrets[0].name",
    ),
    (
        "pull-secret-missing",
        _with("engine", "imagePullSecrets", [{}]),
        "spec.engine.imagePullSecrets[0].name: Required value",
    ),
    ("node-selector-value", _with("engine", "nodeSelector", {"zone": 3}), "spec.engine.nodeSelector.zone"),
    (
        "toleration-operator",
        _with("safety", "tolerations", [{"key": "a", "operator": "Sometimes"}]),
        "spec.safety.tolerations[0].operator",
    ),
    (
        "toleration-effect",
        _with("engine", "tolerations", [{"key": "a", "effect": "Never"}]),
        "spec.engine.tolerations[0].effect",
    ),
    (
        "affinity-shape",
        _with("safety", "affinity", {"podAntiAffinity": "yes"}),
        "spec.safety.affinity.podAntiAffinity",
    ),
    (
        "priority-class",
        _with("engine", "priorityClassName", "Trading Critical"),
        "spec.engine.priorityClassName",
    ),
    (
        "expose-no-ranges",
        _with("safety", "expose", {"type": "NodePort"}),
        "spec.safety.expose.sourceRanges: Required value",
    ),
    (
        "expose-empty-ranges",
        _with("safety", "expose", {"sourceRanges": []}),
        "spec.safety.expose.sourceRanges",
    ),
    (
        "expose-bad-cidr",
        _with("safety", "expose", {"sourceRanges": ["everyone"]}),
        "spec.safety.expose.sourceRanges[0]",
    ),
    (
        "expose-port",
        _with("safety", "expose", {"sourceRanges": ["10.0.0.0/8"], "nodePort": 8888}),
        "spec.safety.expose.nodePort",
    ),
    (
        "expose-type",
        _with("safety", "expose", {"sourceRanges": ["10.0.0.0/8"], "type": "ExternalName"}),
        "spec.safety.expose.type",
    ),
    ("expose-on-engine", _with("engine", "expose", {"sourceRanges": ["10.0.0.0/8"]}), None),
]


def test_unknown_affinity_key_is_pruned_never_applied(crs, namespace):
    spec = _create(crs, namespace, _ts("affinity", _with("engine", "affinity", {"nodeAfinity": {}})))["spec"]
    assert spec["engine"]["affinity"] == {}


@pytest.mark.parametrize(("name", "spec", "message"), INVALID, ids=[i[0] for i in INVALID])
def test_bad_workload_fields_are_refused_with_a_readable_message(crs, namespace, name, spec, message):
    if message is None:  # not a field of the engine: pruned, never applied
        assert "expose" not in _create(crs, namespace, _ts(name, spec))["spec"]["engine"]
        return
    with pytest.raises(client.ApiException) as exc:
        _create(crs, namespace, _ts(name, spec))
    assert exc.value.status == 422, exc.value.body
    text = json.loads(exc.value.body)["message"]
    assert message in text, text
