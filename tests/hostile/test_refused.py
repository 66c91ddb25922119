"""Hostile TradingSystems the API server refuses: every case gets HTTP 422 (or 413 for a body over the
request limit) with a message that names the offending field, so nothing reaches the operator.

Classes: huge lists, extreme numbers, wrong types, missing required fields, very long strings (up to
~1 MiB), names too long for their children, Secret references that could point elsewhere, unicode where
only ASCII is meaningful (images, URLs, label values)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION

from tests.hostile.harness import Namespaces

MIB = 1024 * 1024
UNICODE = "\u202e\u200b\u200d🚨\x00\x07"  # RTL override, zero-width space and joiner, emoji, NUL, BEL


def _body(spec: dict[str, Any] | None, name: str = "hostile", **meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": name, **meta},
    }
    if spec is not None:
        body["spec"] = spec
    return body


def _alpaca(secret: str) -> dict[str, Any]:
    return {"broker": {"kind": "alpaca", "credentialsSecret": secret}}


# (id, body, [substrings the refusal must contain: the field, and what is wrong])
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # -- huge lists
    (
        "10k-symbols",
        _body({"symbols": [f"S{i}" for i in range(10_000)]}),
        ["spec.symbols", "at most 100 items"],
    ),
    (
        "5k-env-entries",
        _body({"engine": {"env": [{"name": f"V{i}", "value": "x"} for i in range(5_000)]}}),
        ["spec.engine.env", "at most 64 items"],
    ),
    (
        "2k-resource-keys",
        _body({"engine": {"resources": {"limits": {f"example.com/r{i}": "1" for i in range(2_000)}}}}),
        ["spec.engine.resources.limits", "at most 8"],
    ),
    (
        "env-total-characters",
        _body({"safety": {"env": [{"name": f"V{i}", "value": "x" * 100} for i in range(60)]}}),
        ["spec.safety.env", "at most 4096 characters"],
    ),
    # -- extreme numbers
    (
        "1e308",
        _body({"risk": {"maxOrderNotional": 1e308}}),
        ["spec.risk.maxOrderNotional", "less than or equal"],
    ),
    (
        "negative-zero",
        _body({"risk": {"maxOrderNotional": -0.0}}),
        ["spec.risk.maxOrderNotional", "greater than 0"],
    ),
    (
        "int-beyond-int64",
        _body({"risk": {"maxOrderQuantity": 10**30}}),
        ["spec.risk.maxOrderQuantity", "must be of type integer"],
    ),
    (
        "int64-max",
        # strategy.params are the strategy's own (tests/hostile/test_operator_hostile.py: Degraded)
        _body({"risk": {"maxOrderQuantity": 2**63 - 1}}),
        ["spec.risk.maxOrderQuantity", "less than or equal"],
    ),
    (
        "seed-negative",
        _body({"marketData": {"seed": -(2**63)}}),
        ["spec.marketData.seed", "greater than or equal"],
    ),
    (
        "tiny-feed-interval",
        _body({"marketData": {"intervalSeconds": 5e-324}}),
        ["spec.marketData.intervalSeconds", "at least 0.01"],
    ),
    (
        "tiny-watchdog-interval",
        _body({"safety": {"autoTrip": {"checkIntervalSeconds": 1e-9}}}),
        ["spec.safety.autoTrip.checkIntervalSeconds", "at least 0.1"],
    ),
    (
        "number-as-string",
        _body({"risk": {"maxOrderNotional": "1000"}}),
        ["spec.risk.maxOrderNotional", "number"],
    ),
    ("bool-as-string", _body({"killSwitch": {"engaged": "true"}}), ["spec.killSwitch.engaged", "boolean"]),
    # -- wrong types, missing required fields
    ("symbols-not-a-list", _body({"symbols": "AAPL"}), ["spec.symbols", "array"]),
    ("risk-a-list", _body({"risk": [1, 2]}), ["spec.risk", "object"]),
    ("killswitch-a-bool", _body({"killSwitch": True}), ["spec.killSwitch", "object"]),
    ("env-a-map", _body({"engine": {"env": {"A": "b"}}}), ["spec.engine.env", "array"]),
    ("no-spec", _body(None), ["spec", "Required value"]),
    ("empty-symbols", _body({"symbols": []}), ["spec.symbols", "at least 1"]),
    (
        "env-without-name",
        _body({"engine": {"env": [{"value": "x"}]}}),
        ["spec.engine.env[0].name", "Required"],
    ),
    (
        "release-without-reason",
        _body({"killSwitch": {"release": {"operator": "alice"}}}),
        ["spec.killSwitch.release.reason", "Required"],
    ),
    (
        "valueFrom-junk",
        _body({"engine": {"env": [{"name": "A", "valueFrom": {"junk": "x" * 1000}}]}}),
        ["spec.engine.env[0].valueFrom", "exactly one of"],
    ),
    (
        "value-and-valueFrom",
        _body(
            {"engine": {"env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}}
        ),
        ["spec.engine.env[0]", "either value or valueFrom"],
    ),
    (
        "resources-junk",
        _body({"engine": {"resources": {"limits": {"cpu": "lots"}}}}),
        ["spec.engine.resources.limits.cpu", "should match"],
    ),
    # -- very long strings (~1 MiB: under the 3 MiB request limit, over every bound)
    ("1mib-image", _body({"engine": {"image": "x" * MIB}}), ["spec.engine.image", "Too long"]),
    (
        "1mib-env-value",
        _body({"engine": {"env": [{"name": "A", "value": "x" * MIB}]}}),
        ["spec.engine.env[0].value", "Too long"],
    ),
    (
        "1mib-replay-path",
        _body({"marketData": {"kind": "replay", "replayPath": "/" * MIB}}),
        ["spec.marketData.replayPath", "Too long"],
    ),
    (
        "1mib-resource-name",
        _body({"engine": {"resources": {"limits": {"x" * MIB: "1"}}}}),
        ["spec.engine.resources.limits", "253 characters"],
    ),
    ("1mib-annotation", _body({}, annotations={"note": "x" * MIB}), ["metadata.annotations", "Too long"]),
    (
        "100k-kill-reason",
        _body({"killSwitch": {"engaged": True, "reason": "x" * 100_000}}),
        ["spec.killSwitch.reason", "Too long"],
    ),
    (
        "100k-kill-operator",
        _body({"killSwitch": {"engaged": True, "operator": "o" * 100_000}}),
        ["spec.killSwitch.operator", "Too long"],
    ),
    ("1mib-symbol", _body({"symbols": ["A" * MIB]}), ["spec.symbols[0]", "Too long"]),
    # -- names: children such as <name>-engine-headless and the pod's controller-revision-hash label
    ("name-63", _body({}, name="a" * 63), ["metadata.name may have at most 40 characters"]),
    ("name-41", _body({}, name="a" * 41), ["metadata.name may have at most 40 characters"]),
    # -- Secret references: a name in this namespace, nothing else
    (
        "secret-other-namespace",
        _body(_alpaca("other-ns/secret")),
        ["spec.broker.credentialsSecret", "should match"],
    ),
    ("secret-path-traversal", _body(_alpaca("../x")), ["spec.broker.credentialsSecret", "should match"]),
    ("secret-dot-dot", _body(_alpaca("a..b")), ["spec.broker.credentialsSecret", "should match"]),
    ("secret-invalid-chars", _body(_alpaca("Bad_Name$")), ["spec.broker.credentialsSecret", "should match"]),
    ("secret-unicode", _body(_alpaca("creds\u200b")), ["spec.broker.credentialsSecret", "should match"]),
    ("secret-too-long", _body(_alpaca("a" * 254)), ["spec.broker.credentialsSecret", "Too long"]),
    ("secret-empty-alpaca", _body(_alpaca("")), ["spec.broker.credentialsSecret"]),
    (
        "env-secret-ref-other-namespace",
        _body(
            {"engine": {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "ns/s", "key": "k"}}}]}}
        ),
        ["spec.engine.env[0].valueFrom.secretKeyRef.name", "should match"],
    ),
    # -- unicode where only ASCII means anything
    ("image-unicode", _body({"engine": {"image": f"img{UNICODE}"}}), ["spec.engine.image", "should match"]),
    (
        "broker-url-unicode",
        _body({"broker": {"baseUrl": f"http://x{UNICODE}"}}),
        ["spec.broker.baseUrl", "should match"],
    ),
    (
        "feed-url-space",
        _body({"marketData": {"baseUrl": "wss://a b"}}),
        ["spec.marketData.baseUrl", "should match"],
    ),
    ("symbol-unicode", _body({"symbols": ["AAPL\u200b"]}), ["spec.symbols[0]", "should match"]),
    ("label-unicode", _body({}, labels={"team": "🚨"}), ["metadata.labels", "Invalid value"]),
]


def _refusal(crs: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(client.ApiException) as exc:
        crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")
    try:
        message = json.loads(exc.value.body)["message"]
    except (TypeError, ValueError, KeyError):
        message = str(exc.value.body)
    return exc.value.status, message


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_api_server_refuses_it_naming_the_field(
    kube_api: client.ApiClient, namespaces: Namespaces, body: dict[str, Any], expected: list[str]
) -> None:
    status, message = _refusal(client.CustomObjectsApi(kube_api), namespaces.hostile, body)
    assert status == 422, message[:500]
    for part in expected:
        assert part in message, message[:1000]


def test_engaging_with_a_100k_reason_is_refused_and_a_plain_engage_still_works(
    kube_api: client.ApiClient, namespaces: Namespaces
) -> None:
    """An over-long reason is refused on a patch too, with the field named; the emergency stop itself
    needs nothing but engaged=true, so the retry without it goes through."""
    crs = client.CustomObjectsApi(kube_api)
    crs.create_namespaced_custom_object(
        GROUP, VERSION, namespaces.hostile, PLURAL, _body({}, name="long-reason")
    )
    try:
        with pytest.raises(client.ApiException) as exc:
            crs.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespaces.hostile,
                PLURAL,
                "long-reason",
                {"spec": {"killSwitch": {"engaged": True, "reason": "r" * 100_000}}},
            )
        assert exc.value.status == 422
        assert "spec.killSwitch.reason" in json.loads(exc.value.body)["message"]
        patched = crs.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespaces.hostile,
            PLURAL,
            "long-reason",
            {"spec": {"killSwitch": {"engaged": True}}},
        )
        assert patched["spec"]["killSwitch"]["engaged"] is True
    finally:
        crs.delete_namespaced_custom_object(GROUP, VERSION, namespaces.hostile, PLURAL, "long-reason")
