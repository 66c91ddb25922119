"""The finalizer: halt the engine before the workloads go; bounded wait when it cannot be reached."""

from __future__ import annotations

import time

from tests.operator.harness import (
    TS,
    EngineFleet,
    OperatorProcess,
    attach_standin,
    running_with_standin,
    wait_for,
)
from tests.operator.standin_engine import free_port


def test_delete_halts_a_reachable_engine_first(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet
) -> None:
    created = ts.create(namespace, "demo")
    assert "trading.quantzoo.io/halt-before-delete" in wait_for(
        lambda: ts.get(namespace, "demo")["metadata"].get("finalizers"), what="the finalizer"
    )
    assert created
    ts.wait_ready(namespace, "demo")
    engine = attach_standin(ts, engines, namespace, "demo")

    ts.delete(namespace, "demo")
    wait_for(lambda: ts.get(namespace, "demo") is None, what="the TradingSystem to go")
    (command,) = engine.commands
    assert command.engaged is True
    assert command.source == "operator:finalizer"
    assert command.close_positions is False  # flattening on delete is opt-in
    event = ts.wait_event(namespace, "demo", "HaltedBeforeDelete")
    assert event.type == "Normal"
    assert "acknowledged by 1/1" in event.message


def test_delete_flattens_when_asked(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet
) -> None:
    engine = running_with_standin(
        ts, engines, namespace, "demo", annotations={"trading.quantzoo.io/flatten-on-delete": "true"}
    )
    ts.delete(namespace, "demo")
    wait_for(lambda: ts.get(namespace, "demo") is None, what="the TradingSystem to go")
    assert engine.commands[-1].close_positions is True
    assert "1 positions closed" in ts.wait_event(namespace, "demo", "HaltedBeforeDelete").message


def test_delete_proceeds_after_a_bounded_wait_when_the_engine_is_unreachable(
    operator: OperatorProcess, ts: TS, namespace: str
) -> None:
    ts.create(namespace, "demo")
    ts.wait_ready(namespace, "demo")
    pod = ts.engine_pod(namespace, "demo").metadata.name
    ts.annotate_engine_pod(namespace, pod, f"http://127.0.0.1:{free_port()}")  # nobody listens

    started = time.monotonic()
    ts.delete(namespace, "demo")
    wait_for(lambda: ts.get(namespace, "demo") is None, 60, what="the TradingSystem to go")
    waited = time.monotonic() - started
    warning = ts.wait_event(namespace, "demo", "DeletionProceededWithoutHalt")
    assert warning.type == "Warning"
    assert "demo-engine-0" in warning.message
    # It did wait (QUANTZOO_OPERATOR_DELETE_HALT_TIMEOUT_SECONDS=3 in these tests) before letting go.
    assert waited >= 3
