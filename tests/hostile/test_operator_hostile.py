"""Hostile TradingSystems the API server accepts, against ONE real operator process: each is either
handled (the text round-trips, children stay valid) or degraded with a machine-readable reason, a
human message and a Warning Event, with no broken child and no hot loop. The operator stays alive and
healthy, reads Secrets only in the TradingSystem's own namespace, never writes a Secret value anywhere,
and a good TradingSystem created after all of them still becomes Ready.

Tests run in file order and share the module's operator and objects; the last ones check the aftermath.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for

from tests.hostile.harness import (
    CREDENTIALS_SECRET,
    Namespaces,
    everything_written,
    reconcile_counters,
    secret_value_forms,
)
from tests.operator.harness import TS, EngineFleet, OperatorProcess, attach_standin

# RTL override, zero-width space and joiner, emoji (outside the BMP), NUL, BEL, DEL, a C1 control, CJK.
UNICODE = "\u202eevil\u200b\u200d 🚨🛑 \x00\x07\x7f\x85 停止"
EMOJI = "🚨"
PARTIAL_SECRET = "partial-creds"
PARTIAL_KEY_VALUE = "PARTIAL-KEY-VALUE-4f0c2e"
COMPONENT = "app.kubernetes.io/component"
NAME_40 = "n" * 36 + "-max"  # 40 characters: the longest name the CRD admits

# Accepted by the API server, and what the operator must make of each.
SPECS: dict[str, dict[str, Any]] = {
    # Secrets: one that exists only in ANOTHER namespace, one missing a key.
    "steal-other-ns": {"broker": {"kind": "alpaca", "credentialsSecret": CREDENTIALS_SECRET}},
    "partial-secret": {"broker": {"kind": "alpaca", "credentialsSecret": PARTIAL_SECRET}},
    "no-such-secret": {"broker": {"kind": "alpaca", "credentialsSecret": "does-not-exist"}},
    # Valid fields, children the API server refuses (requests above limits).
    "child-rejected": {"engine": {"resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "2"}}}},
    # Extreme but legal numbers.
    "tiny-numbers": {
        "broker": {"initialCash": -0.0},
        "risk": {"maxOrderNotional": 5e-324, "priceCollarPct": 1e-300, "staleDataSeconds": 4.9e-324},
        "marketData": {"seed": 2147483647, "intervalSeconds": 0.01},
    },
    # Unicode in every free-text field, up to the bounds: the whole spec must still fit kopf's
    # annotation and the ConfigMap.
    "max-unicode": {
        "marketData": {"kind": "replay", "replayPath": EMOJI * 1024},
        # env: 16 x (3 + 253) = 4096 characters per workload, the CRD's total bound.
        "killSwitch": {"reason": EMOJI * 1024, "operator": EMOJI * 128, "source": EMOJI * 128},
        "engine": {"env": [{"name": f"E{i:02}", "value": EMOJI * 253} for i in range(16)]},
        "safety": {
            "env": [{"name": f"S{i:02}", "value": UNICODE * (253 // len(UNICODE))} for i in range(16)]
        },
    },
    NAME_40: {},
    "argocd-labels": {},
    # A strategy the image does not have, and a parameter its own model refuses.
    "unknown-strategy": {"strategy": {"name": "martingale"}},
    "bad-strategy-param": {
        "strategy": {"name": "maCrossover", "params": {"fastWindow": 30, "slowWindow": 10}}
    },
    # Free-form for the API server, refused by the strategy's own model.
    "int64-max-strategy-param": {"strategy": {"name": "maCrossover", "params": {"orderQuantity": 2**63 - 1}}},
}
DEGRADED = {
    "steal-other-ns": "CredentialsSecretMissing",
    "no-such-secret": "CredentialsSecretMissing",
    "partial-secret": "CredentialsSecretInvalid",
    "child-rejected": "ChildRejected",
    "unknown-strategy": "StrategyInvalid",
    "bad-strategy-param": "StrategyInvalid",
    "int64-max-strategy-param": "StrategyInvalid",
}
ARGO_LABELS = {
    "argocd.argoproj.io/instance": "platform",
    "app.kubernetes.io/instance": "quantzoo-trading-systems",
    "team": "rates",
}


@pytest.fixture(scope="module")
def hostile(
    namespaces: Namespaces, hostile_operator: OperatorProcess, tsm: TS, kube_api: client.ApiClient
) -> dict[str, dict[str, Any]]:
    """Every accepted hostile TradingSystem, created at once against the one operator."""
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespaces.hostile,
        {"metadata": {"name": PARTIAL_SECRET}, "stringData": {"ALPACA_API_KEY": PARTIAL_KEY_VALUE}},
    )
    for name, spec in SPECS.items():
        labels = ARGO_LABELS if name == "argocd-labels" else None
        tsm.create(namespaces.hostile, name, spec, **({"labels": labels} if labels else {}))
    return SPECS


def _children(api: client.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    selector = f"trading.quantzoo.io/system={name}"
    out: list[dict[str, Any]] = []
    for kind, lister in (
        ("ConfigMap", core.list_namespaced_config_map),
        ("Service", core.list_namespaced_service),
        ("ServiceAccount", core.list_namespaced_service_account),
        ("Secret", core.list_namespaced_secret),
        ("Pod", core.list_namespaced_pod),
        ("StatefulSet", apps.list_namespaced_stateful_set),
        ("Deployment", apps.list_namespaced_deployment),
    ):
        for item in lister(namespace, label_selector=selector).items:
            out.append({"kind": kind, **api.sanitize_for_serialization(item)})
    return out


@pytest.mark.parametrize("name", sorted(DEGRADED))
def test_a_bad_reference_or_refused_child_degrades_with_a_reason_a_message_and_a_warning(
    hostile: dict, namespaces: Namespaces, tsm: TS, kube_api: client.ApiClient, name: str
) -> None:
    ns, reason = namespaces.hostile, DEGRADED[name]
    degraded = tsm.wait_condition(ns, name, "Degraded", "True", reason=reason, timeout=60)
    ready = tsm.wait_condition(ns, name, "Ready", "False", reason=reason)
    assert ready["message"] == degraded["message"]
    message = degraded["message"]
    if reason == "CredentialsSecretMissing":
        secret = SPECS[name]["broker"]["credentialsSecret"]
        assert f"'{secret}'" in message, message
        assert f"namespace '{ns}'" in message, message
        assert "ALPACA_API_KEY and ALPACA_API_SECRET" in message
    elif reason == "CredentialsSecretInvalid":
        assert f"'{PARTIAL_SECRET}'" in message, message
        assert "has no (or an empty) ALPACA_API_SECRET;" in message  # the key that IS there is fine
    elif reason == "StrategyInvalid":
        field = {
            "unknown-strategy": "strategy.name",
            "bad-strategy-param": "strategy.params.slowWindow",
            "int64-max-strategy-param": "strategy.params.orderQuantity",
        }[name]
        assert message.startswith(f"{field}: "), message
        assert "the engine does not trade" in message
    else:
        assert "resources.requests" in message, message
        assert "cpu limit" in message, message
    assert (tsm.get(ns, name) or {})["status"]["phase"] == "Degraded"
    event = tsm.wait_event(ns, name, reason)
    assert event.type == "Warning"
    assert event.message == message[:1024]

    # No broken child: no engine StatefulSet, no engine pod. (With a refused engine, the safety service,
    # which is valid on its own, may run: its kill-switch API still works.)
    children = _children(kube_api, ns, name)
    kinds = [c["kind"] for c in children]
    assert "StatefulSet" not in kinds, kinds
    engine_pods = [
        c for c in children if c["kind"] == "Pod" and c["metadata"]["labels"].get(COMPONENT) == "engine"
    ]
    assert engine_pods == []
    if reason.startswith("Credentials"):
        assert kinds == [], f"nothing is created before the credentials exist: {kinds}"


def test_a_secret_in_another_namespace_is_never_used(
    hostile: dict, namespaces: Namespaces, tsm: TS, kube_api: client.ApiClient
) -> None:
    """`steal-other-ns` names a Secret that exists, with both keys, in another namespace: the operator
    looks only in the TradingSystem's own namespace, so it reports the Secret missing."""
    tsm.wait_condition(namespaces.hostile, "steal-other-ns", "Degraded", "True", "CredentialsSecretMissing")
    assert client.AppsV1Api(kube_api).list_namespaced_stateful_set(namespaces.hostile).items is not None
    written = everything_written(kube_api, namespaces.hostile)
    for value in namespaces.other_secret_values:
        for form in secret_value_forms(value):
            assert form not in written


def test_unicode_in_every_kill_switch_field_round_trips_to_the_engine_and_status(
    hostile: dict, namespaces: Namespaces, tsm: TS, hostile_operator: OperatorProcess
) -> None:
    ns, name = namespaces.hostile, "unicode-kill"
    tsm.create(ns, name, {"symbols": ["AAPL"]})
    tsm.wait_ready(ns, name, timeout=60)
    fleet = EngineFleet()
    try:
        engine = attach_standin(tsm, fleet, ns, name)
        reason, who, source = f"halt {UNICODE}", f"{UNICODE[:8]}eve", f"kubectl{UNICODE[:3]}"
        tsm.patch(ns, name, engage_patch(reason=reason, operator=who, source=source))
        tsm.wait_condition(ns, name, "KillSwitchEngaged", "True", reason="Acknowledged", timeout=30)
        assert engine.commands[-1].engaged
        assert engine.commands[-1].reason == reason
        ks = (tsm.get(ns, name) or {})["status"]["killSwitch"]
        assert (ks["reason"], ks["by"], ks["source"]) == (reason, who, source)
        tsm.wait_event(ns, name, "KillSwitchEngaged")

        tsm.patch(
            ns,
            name,
            release_patch_for(
                kill_switch_of(tsm.get(ns, name)), operator=f"{EMOJI} bob\u200b", reason=f"fixed {UNICODE}"
            ),
        )
        tsm.wait_condition(ns, name, "KillSwitchEngaged", "False", timeout=30)
        assert engine.commands[-1].engaged is False
    finally:
        fleet.stop_all()
    lines = hostile_operator.log.read_text(errors="replace")
    assert "cannot write kill-switch status" not in lines, hostile_operator.tail(40)


@pytest.mark.parametrize("name", ["tiny-numbers", "max-unicode", NAME_40, "argocd-labels"])
def test_extreme_but_legal_specs_become_ready_with_valid_children(
    hostile: dict, namespaces: Namespaces, tsm: TS, kube_api: client.ApiClient, name: str
) -> None:
    ns = namespaces.hostile
    tsm.wait_ready(ns, name, timeout=60)
    pod = tsm.engine_pod(ns, name)
    assert pod.metadata.name == f"{name}-engine-0"
    for label, value in pod.metadata.labels.items():  # 63-character label values at most
        assert len(value) <= 63, (label, value)
    children = _children(kube_api, ns, name)
    names = {c["metadata"]["name"] for c in children}
    assert {
        f"{name}-engine-admin",
        f"{name}-safety-token",
        f"{name}-config",
        f"{name}-engine-headless",
    } <= names

    # The engine's config carries the spec exactly (unicode and extreme numbers included), kill switch aside.
    config_map = next(c for c in children if c["kind"] == "ConfigMap")
    doc = json.loads(config_map["data"]["engine.json"])["spec"]
    stored = (tsm.get(ns, name) or {})["spec"]
    for field in ("risk", "marketData", "broker"):
        assert doc[field] == stored[field], field
    assert "killSwitch" not in doc  # the TradingSystem is its only source (builders/config_map.py)

    for child in children:
        labels = child["metadata"].get("labels") or {}
        assert not any(k.startswith("argocd.argoproj.io/") for k in labels), child["metadata"]
        assert "app.kubernetes.io/instance" not in labels, child["metadata"]
    if name == "argocd-labels":
        assert all(
            (c["metadata"].get("labels") or {}).get("team") == "rates" for c in children if c["kind"] != "Pod"
        )


def test_the_whole_unicode_spec_fits_the_operators_bookkeeping(
    hostile: dict, namespaces: Namespaces, tsm: TS, hostile_operator: OperatorProcess
) -> None:
    """The largest, most escaped spec the CRD admits is handled normally: kopf's diff base is a digest of
    it (quantzoo_operator/diffbase.py), and all annotations stay inside their 256 KiB (the CRD's bounds
    leave room for kubectl apply's copy of the spec)."""
    tsm.wait_ready(namespaces.hostile, "max-unicode", timeout=60)
    ts = tsm.get(namespaces.hostile, "max-unicode") or {}
    annotations = ts["metadata"].get("annotations") or {}
    assert annotations["trading.quantzoo.io/last-handled-configuration"].startswith("sha256:")
    assert sum(len(k) + len(v.encode()) for k, v in annotations.items()) < 256 * 1024
    for entry in hostile_operator.log_lines():
        if entry.get("tradingsystem") == "max-unicode":
            assert entry["level"] != "ERROR", entry


def test_no_secret_value_is_written_anywhere(
    hostile: dict, namespaces: Namespaces, hostile_operator: OperatorProcess, kube_api: client.ApiClient
) -> None:
    written = everything_written(kube_api, namespaces.hostile)
    log = hostile_operator.log.read_text(errors="replace")
    for value in (*namespaces.other_secret_values, PARTIAL_KEY_VALUE):
        for form in secret_value_forms(value):
            assert form not in written, f"{value} leaked into an object"
            assert form not in log, f"{value} leaked into the operator log"


def test_the_operator_neither_crashes_nor_loops_and_still_serves_a_good_system(
    hostile: dict,
    namespaces: Namespaces,
    tsm: TS,
    hostile_operator: OperatorProcess,
    kube_api: client.ApiClient,
) -> None:
    ns = namespaces.hostile
    for name, reason in DEGRADED.items():
        tsm.wait_condition(ns, name, "Degraded", "True", reason=reason, timeout=60)
    time.sleep(6)  # the failing ones are past their first quick retries

    window = 8.0
    before = reconcile_counters(hostile_operator)
    time.sleep(window)
    after = reconcile_counters(hostile_operator)
    assert hostile_operator.proc.poll() is None, hostile_operator.tail(80)
    health = hostile_operator.health() or {}
    assert health.get("alive") is True, health
    runs = after.get("reconcile_total/reconcile", 0) - before.get("reconcile_total/reconcile", 0)
    # A fixed 2 s retry would run each failing system 4 times in 8 s; the doubling backoff at most twice.
    assert runs <= 2 * len(DEGRADED), f"{runs} reconciles in {window}s: {before} -> {after}"
    children = after.get("reconcile_total/child", 0) - before.get("reconcile_total/child", 0)
    assert children <= 10 * len(DEGRADED), f"{children} child events in {window}s (drift fight?)"

    tsm.create(ns, "good", {"symbols": ["AAPL", "MSFT"]})
    tsm.wait_ready(ns, "good", timeout=60)
    assert client.AppsV1Api(kube_api).read_namespaced_stateful_set("good-engine", ns).spec.replicas == 1
    assert tsm.wait_event(ns, "good", "ChildrenCreated")
