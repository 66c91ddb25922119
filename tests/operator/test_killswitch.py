"""Kill-switch propagation by the operator, against the real control plane and a stand-in engine."""

from __future__ import annotations

import json

from kubernetes import client
from quantzoo_api.killswitch import TradingState, engage_patch, kill_switch_of, release_patch_for

from tests.operator.harness import (
    TS,
    EngineFleet,
    OperatorProcess,
    running_with_standin,
    wait_for,
)
from tests.operator.standin_engine import free_port


def _kill_status(ts: TS, namespace: str, name: str) -> dict:
    return (ts.get(namespace, name) or {}).get("status", {}).get("killSwitch") or {}


def _metric(op: OperatorProcess, name: str) -> float:
    for line in op.metrics().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_engage_and_release_reach_every_replica_and_are_recorded(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet
) -> None:
    engine = running_with_standin(ts, engines, namespace, "demo")

    patched = ts.patch(
        namespace, "demo", engage_patch(reason="fat finger in AAPL", operator="alice", source="kubectl")
    )
    generation = patched["metadata"]["generation"]

    def acknowledged() -> dict | None:
        ks = _kill_status(ts, namespace, "demo")
        acks = ks.get("acknowledgements") or []
        return ks if ks.get("engaged") and ks.get("generation") == generation and acks else None

    ks = wait_for(acknowledged, what="the acknowledgement in status.killSwitch")
    (ack,) = ks["acknowledgements"]
    assert ack["replica"] == "demo-engine-0"
    assert ack["endpoint"] == engine.url
    assert ack["engaged"] is True
    assert ack["tradingState"] == "HALTED"
    assert ack["latencyMs"] >= 0
    assert ack["cancelledOrders"] == 2
    assert ack["acknowledgedAt"]
    assert (ks["reason"], ks["by"], ks["source"]) == ("fat finger in AAPL", "alice", "kubectl")
    assert ks["propagationLatencyMs"] >= 0
    assert ks["since"]

    command = engine.commands[-1]
    assert command.engaged is True
    assert command.generation == generation
    assert (command.reason, command.operator) == ("fat finger in AAPL", "alice")

    cond = ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "True", reason="Acknowledged")
    assert cond["observedGeneration"] == generation
    assert "acknowledged by 1/1 replicas" in cond["message"]
    event = ts.wait_event(namespace, "demo", "KillSwitchEngaged")
    assert event.message.startswith(
        "Kill switch engaged by alice (kubectl): fat finger in AAPL; acknowledged by 1/1"
    )
    assert " ms" in event.message
    wait_for(lambda: ts.get(namespace, "demo")["status"]["phase"] == "Halted", what="phase Halted")
    assert _metric(operator, "quantzoo_operator_kill_switch_propagation_seconds_count") >= 1
    assert not [e for e in ts.events(namespace, "demo") if e.reason == "ConfigUpdated"], (
        "a kill is not a config change"
    )

    # Two writers of status, each with its own server-side-apply field manager and its own entries.
    owned = {
        m["manager"]: json.dumps(m["fieldsV1"])
        for m in ts.get(namespace, "demo")["metadata"]["managedFields"]
        if m.get("subresource") == "status"
    }
    kill_fields = owned["quantzoo-operator-killswitch"]
    reconcile_fields = owned["quantzoo-operator-reconcile"]
    assert '"f:killSwitch"' in kill_fields
    assert "KillSwitchEngaged" in kill_fields
    assert "Ready" not in kill_fields
    for ctype in ("Ready", "EngineReady", "SafetyReady", "Degraded"):
        assert ctype in reconcile_fields
    assert "KillSwitchEngaged" not in reconcile_fields
    assert '"f:phase"' in reconcile_fields

    # An explicit release (a release record: who and why) resumes the engine.
    ts.patch(
        namespace,
        "demo",
        release_patch_for(kill_switch_of(ts.get(namespace, "demo")), operator="bob", reason="all clear"),
    )
    ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "False", reason="Released")
    wait_for(lambda: engine.trading_state is TradingState.ACTIVE, what="the stand-in resumed")
    assert engine.commands[-1].engaged is False
    assert engine.commands[-1].operator == "bob"
    released = ts.wait_event(namespace, "demo", "KillSwitchReleased")
    assert "Kill switch released by bob: all clear" in released.message
    wait_for(lambda: ts.get(namespace, "demo")["status"]["phase"] == "Running", what="phase Running")


def test_an_unreachable_replica_degrades_until_it_acknowledges(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet
) -> None:
    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    token = ts.admin_token(namespace, "demo")
    pod = ts.engine_pod(namespace, "demo").metadata.name
    port = free_port()  # nothing listens here yet: the replica is down
    ts.annotate_engine_pod(namespace, pod, f"http://127.0.0.1:{port}")

    ts.patch(namespace, "demo", engage_patch(reason="drill", operator="carol", source="kubectl"))
    degraded = ts.wait_condition(namespace, "demo", "Degraded", "True", reason="KillSwitchUnacknowledged")
    assert "demo-engine-0" in degraded["message"]
    assert ts.condition(namespace, "demo", "KillSwitchEngaged")["reason"] == "Unacknowledged"
    warning = ts.wait_event(namespace, "demo", "KillSwitchUnacknowledged")
    assert warning.type == "Warning"
    wait_for(lambda: ts.get(namespace, "demo")["status"]["phase"] == "Degraded", what="phase Degraded")
    wait_for(lambda: _metric(operator, "quantzoo_operator_kill_switch_unacknowledged") == 1, what="the gauge")

    # The replica comes back: the operator's retries reach it.
    engine = engines.start(token, pod, port=port)
    ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "True", reason="Acknowledged")
    ts.wait_condition(namespace, "demo", "Degraded", "False", reason="AsExpected")
    assert engine.commands
    assert engine.commands[-1].engaged is True
    wait_for(lambda: ts.get(namespace, "demo")["status"]["phase"] == "Halted", what="phase Halted")
    wait_for(lambda: _metric(operator, "quantzoo_operator_kill_switch_unacknowledged") == 0, what="the gauge")


def test_the_operator_keeps_the_halt_while_engaged(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet
) -> None:
    engine = running_with_standin(ts, engines, namespace, "demo")
    ts.engage_acknowledged(namespace, "demo", reason="drill", operator="dave", source="kubectl")
    pushes = len(engine.commands)

    engine.trading_state = TradingState.ACTIVE  # the replica claims to trade again
    wait_for(lambda: len(engine.commands) > pushes, what="the halt pushed again")
    assert engine.trading_state is TradingState.HALTED
    ts.wait_event(namespace, "demo", "KillSwitchReasserted")


def test_a_rotated_admin_token_is_read_again(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet, kube_api: client.ApiClient
) -> None:
    engine = running_with_standin(ts, engines, namespace, "demo")
    ts.patch(
        namespace, "demo", engage_patch(reason="first", operator="erin", source="kubectl", mode="ReduceOnly")
    )
    ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "True", reason="Acknowledged")

    # Rotate the token: the operator's cached one now gets a 401, so it reads the Secret again.
    import base64

    client.CoreV1Api(kube_api).patch_namespaced_secret(
        "demo-engine-admin", namespace, {"data": {"token": base64.b64encode(b"rotated-token").decode()}}
    )
    engine.token = "rotated-token"
    # A stronger ask (ReduceOnly -> Halt; the CRD refuses the weaker way round while engaged).
    ts.patch(namespace, "demo", {"spec": {"killSwitch": {"mode": "Halt", "reason": "second"}}})
    wait_for(lambda: engine.commands[-1].reason == "second", what="the push with the rotated token")
    assert engine.unauthorized >= 1
    assert engine.trading_state is TradingState.HALTED


def test_the_kill_switch_does_not_wait_behind_a_slow_reconcile(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet, kube_api: client.ApiClient
) -> None:
    """kopf handles one object's events one at a time. Hold the reconcile of an image change inside the
    API server (a webhook that does not answer), then engage the kill switch on the same object: the
    acknowledgement arrives while the reconcile is still stuck."""
    from tests.operator.slow_webhook import SlowWebhook

    engine = running_with_standin(ts, engines, namespace, "demo")
    webhook = SlowWebhook(kube_api, namespace).start()
    try:
        ts.patch(namespace, "demo", {"spec": {"engine": {"image": "quantzoo/quantzoo:0.3.0"}}})
        assert webhook.arrived.wait(30), "the reconcile never reached the StatefulSet"
        assert webhook.holding

        ts.patch(
            namespace, "demo", engage_patch(reason="while reconciling", operator="frank", source="kubectl")
        )
        ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "True", reason="Acknowledged")
        assert webhook.holding, "the reconcile finished first: this run proves nothing"
        assert engine.commands[-1].reason == "while reconciling"
        assert engine.trading_state is TradingState.HALTED
        # Release while the annotated pod is still the one running (the rollout that follows replaces
        # it with a pod whose simulated IP must never be pushed to).
        ts.patch(
            namespace,
            "demo",
            release_patch_for(
                kill_switch_of(ts.get(namespace, "demo")), operator="frank", reason="drill over"
            ),
        )
        ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "False", reason="Released")
    finally:
        webhook.stop()
    # Let go: the held reconcile completes and the image change rolls out as usual.
    wait_for(
        lambda: (
            client.AppsV1Api(kube_api)
            .read_namespaced_stateful_set("demo-engine", namespace)
            .spec.template.spec.containers[0]
            .image
            == "quantzoo/quantzoo:0.3.0"
        ),
        what="the held reconcile to finish",
    )
