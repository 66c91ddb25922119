"""The shared kill-switch vocabulary (quantzoo_api.killswitch): sources, engagement ids, to_command, and the
engage/release patches of the sharpened contract (issue #15). Pure, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from quantzoo_api.killswitch import (
    ActivateRequest,
    KillSource,
    KillSwitchCommand,
    engage_patch,
    engagement_id,
    normalise_mode,
    plan_engage,
    release_patch,
    release_patch_for,
    to_command,
)
from quantzoo_api.types import KillSwitchMode, KillSwitchSpec


def _ks(patch):
    return patch["spec"]["killSwitch"]


def test_sources_are_one_enum_and_hand_written_text_reads_as_other():
    assert KillSource.parse("kubectl") is KillSource.KUBECTL
    assert KillSource.parse("pagerduty-bot") is KillSource.OTHER
    assert KillSource.parse(None, KillSource.ENGINE_WATCH) is KillSource.ENGINE_WATCH
    assert KillSwitchCommand(engaged=True, source="whatever").source is KillSource.OTHER


def test_engagement_ids_have_one_spelling_whatever_parsed_them():
    at = datetime(2026, 12, 5, 18, 0, 0, 123456, tzinfo=UTC)
    assert engagement_id(at) == "2026-12-05T18:00:00.123Z"
    assert engagement_id("2026-12-05T18:00:00.123Z") == "2026-12-05T18:00:00.123Z"
    assert engagement_id(at.astimezone(timezone(timedelta(hours=2)))) == "2026-12-05T18:00:00.123Z"
    assert engagement_id(None) is None


def test_engage_starts_a_new_engagement_and_clears_the_old_release():
    ks = _ks(engage_patch(reason="fat finger", operator="alice", source=KillSource.KUBECTL))
    assert ks["engaged"] is True
    assert ks["release"] is None  # merge patch: removes the previous release record
    assert ks["engagedAt"].endswith("Z")
    assert ks["source"] == "kubectl"


def test_an_engage_is_normalised_never_refused():
    ks = _ks(engage_patch(reason="x" * 5000, operator="", mode="halt"))
    assert len(ks["reason"]) == 1024
    assert ks["operator"] == "unknown"
    assert ks["mode"] == "Halt"
    assert _ks(engage_patch(mode="reduce-only"))["mode"] == "ReduceOnly"
    assert _ks(engage_patch(mode="Pause"))["mode"] == "Halt"  # a typo never weakens an engage
    assert _ks(engage_patch())["reason"] == "no reason given"
    body = ActivateRequest.model_validate({"reason": "y" * 3000, "mode": "HALT", "extra": 1})
    assert (len(body.reason), body.operator, body.mode) == (1024, "unknown", KillSwitchMode.HALT)


def test_engage_while_engaged_keeps_the_engagement_and_only_strengthens():
    current = {
        "engaged": True,
        "mode": "Halt",
        "closePositions": True,
        "engagedAt": "2026-12-05T18:00:00.000Z",
    }
    assert plan_engage(current, mode=KillSwitchMode.REDUCE_ONLY, close_positions=False) is None
    weaker = {**current, "mode": "ReduceOnly", "closePositions": False}
    assert _ks(plan_engage(weaker, mode="Halt", close_positions=True)) == {
        "mode": "Halt",
        "closePositions": True,
    }
    assert plan_engage(weaker, mode=KillSwitchMode.REDUCE_ONLY) is None


def test_an_engagement_without_an_id_gets_one_so_a_release_can_name_it():
    ks = _ks(plan_engage({"engaged": True, "mode": "Halt"}))
    assert ks["engagedAt"]
    assert ks["release"] is None


def test_release_names_the_engagement_and_clears_the_incident():
    current = {
        "engaged": True,
        "mode": "ReduceOnly",
        "reason": "old",
        "engagedAt": "2026-12-05T18:00:00.000Z",
    }
    ks = _ks(release_patch_for(current, operator="bob", reason="all clear"))
    assert ks["release"]["engagedAt"] == "2026-12-05T18:00:00.000Z"
    for field in ("mode", "closePositions", "reason", "operator", "source", "engagedAt"):
        assert ks[field] is None  # removed: the CRD defaults apply to the next engage
    assert "engagedAt" not in _ks(release_patch(operator="b", reason="r", engagement=None))["release"]


def test_to_command_carries_the_engagement_both_ways():
    engaged = KillSwitchSpec.model_validate(
        {"engaged": True, "mode": "ReduceOnly", "engagedAt": "2026-12-05T18:00:00.5Z", "source": "kubectl"}
    )
    cmd = to_command(engaged, generation=4, source=KillSource.ENGINE_WATCH)
    assert (cmd.engaged, cmd.mode, cmd.engagement) == (
        True,
        KillSwitchMode.REDUCE_ONLY,
        "2026-12-05T18:00:00.500Z",
    )
    assert (cmd.source, cmd.operator, cmd.generation) == (KillSource.ENGINE_WATCH, "unknown", 4)
    released = KillSwitchSpec.model_validate(
        {"release": {"operator": "bob", "reason": "ok", "engagedAt": "2026-12-05T18:00:00.500Z"}}
    )
    cmd = to_command(released, generation=5)
    assert (cmd.engaged, cmd.engagement, cmd.operator) == (False, "2026-12-05T18:00:00.500Z", "bob")


def test_normalise_mode():
    assert normalise_mode("REDUCE_ONLY") is KillSwitchMode.REDUCE_ONLY
    assert normalise_mode(None) is KillSwitchMode.HALT
