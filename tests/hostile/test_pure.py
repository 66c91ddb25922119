"""The pure parts behind the hostile-input handling: apply bodies the API server's YAML decoder
accepts whatever the text, the doubling reconcile backoff, and the Degraded reasons."""

from __future__ import annotations

import json

import pytest
from quantzoo_operator import status
from quantzoo_operator.handlers.reconcile import backoff_seconds
from quantzoo_operator.kube import apply_body


@pytest.mark.parametrize(
    "text",
    ["🚨 stop", "\u202e\u200b\u200d", "a\x00b\x07", "\x7f\x85\x9b", "\ufffe\uffff", "停止", '"\\'],
)
def test_apply_bodies_round_trip_and_carry_no_surrogate_or_raw_control_character(text: str) -> None:
    body = apply_body({"status": {"killSwitch": {"reason": text}}})
    assert json.loads(body)["status"]["killSwitch"]["reason"] == text
    decoded = body.decode("utf-8")
    assert "\\ud83d" not in decoded  # a surrogate escape is what the YAML decoder refuses
    assert not any(0x7F <= ord(c) <= 0x9F or ord(c) < 0x20 for c in decoded)
    assert "\ufffe" not in decoded


def test_a_lone_surrogate_becomes_the_replacement_character() -> None:
    assert json.loads(apply_body({"r": "a\ud800b"}))["r"] == "a\ufffdb"


def test_backoff_doubles_while_failing_and_is_capped() -> None:
    assert [backoff_seconds(2, r, ceiling=300) for r in range(10)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    assert backoff_seconds(5, 10_000, ceiling=300) == 300
    assert backoff_seconds(10, 0, ceiling=1) == 10  # never below the configured base


@pytest.mark.parametrize(
    "reason",
    [
        status.Reason.INVALID_SPEC,
        status.Reason.CHILD_REJECTED,
        status.Reason.CREDENTIALS_SECRET_MISSING,
        status.Reason.CREDENTIALS_SECRET_INVALID,
        status.Reason.STRATEGY_INVALID,
    ],
)
def test_a_failure_reason_shows_on_ready_and_degraded(reason: status.Reason) -> None:
    ts = {"metadata": {"name": "x", "namespace": "n", "generation": 3}, "spec": {}}
    out = status.reconcile_status(
        ts,
        None,
        None,
        observed_generation=None,
        reconcile_error="why",
        now="2026-01-01T00:00:00Z",
        error_reason=reason,
    )
    conds = {c["type"]: c for c in out["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", str(reason))
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", str(reason))
    assert conds["Degraded"]["message"] == "why"
    assert out["phase"] == "Degraded"
