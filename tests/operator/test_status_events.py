"""Unit tests of which Events a status write posts (status_writer.transition_events; no cluster)."""

from __future__ import annotations

from quantzoo_operator.status import ConditionType, Transition
from quantzoo_operator.status_writer import transition_events


def _t(ctype: ConditionType, old: str | None, new: str) -> Transition:
    return Transition(ctype, old, new, "SomeReason", f"{ctype} {new}")


def test_ready_turning_true_is_one_event_for_engine_and_safety_too() -> None:
    changes = [
        _t(ConditionType.ENGINE_READY, "False", "True"),
        _t(ConditionType.SAFETY_READY, "False", "True"),
        _t(ConditionType.READY, "False", "True"),
    ]
    assert [reason for _, reason, _ in transition_events(changes)] == ["Ready"]


def test_engine_ready_alone_still_has_its_event() -> None:
    changes = [_t(ConditionType.ENGINE_READY, "False", "True")]
    assert [reason for _, reason, _ in transition_events(changes)] == ["EngineReady"]


def test_a_component_turning_not_ready_is_always_a_warning() -> None:
    changes = [_t(ConditionType.ENGINE_READY, "True", "False"), _t(ConditionType.READY, "True", "False")]
    assert [(kind, reason) for kind, reason, _ in transition_events(changes)] == [
        ("Warning", "EngineNotReady")
    ]


def test_the_first_status_of_a_new_system_posts_nothing() -> None:
    changes = [_t(ConditionType.ENGINE_READY, None, "False"), _t(ConditionType.READY, None, "False")]
    assert transition_events(changes) == []
