"""The trading state machine: derived from facts, fail closed, shutdown terminal."""

from __future__ import annotations

import pytest
from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import KillSwitchMode
from quantzoo_engine.state import HaltReason, TradingFacts, TradingStateMachine, derive_state, halt_reasons

READY = TradingFacts(reconciled=True, kill_switch_known=True)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (TradingFacts(), TradingState.HALTED),
        (TradingFacts(reconciled=True), TradingState.HALTED),
        (TradingFacts(kill_switch_known=True), TradingState.HALTED),
        (READY, TradingState.ACTIVE),
        (TradingFacts(True, True, True, KillSwitchMode.HALT), TradingState.HALTED),
        (TradingFacts(True, True, True, KillSwitchMode.REDUCE_ONLY), TradingState.REDUCE_ONLY),
        (TradingFacts(True, False, True, KillSwitchMode.REDUCE_ONLY), TradingState.HALTED),
        (TradingFacts(True, True, False, KillSwitchMode.HALT, shutting_down=True), TradingState.HALTED),
    ],
)
def test_state_is_derived_from_facts(facts: TradingFacts, expected: TradingState) -> None:
    assert derive_state(facts) is expected


def test_a_new_machine_is_halted_and_says_why() -> None:
    machine = TradingStateMachine()
    assert machine.state is TradingState.HALTED
    assert set(machine.halt_reasons) == {
        HaltReason.BROKER_NOT_RECONCILED,
        HaltReason.KILL_SWITCH_STATE_UNKNOWN,
    }


def test_active_only_after_reconcile_and_reading_the_switch() -> None:
    machine = TradingStateMachine()
    assert machine.broker_reconciled() is None  # still HALTED: the switch is not known yet
    transition = machine.kill_switch_read()
    assert transition is not None
    assert (transition.before, transition.after) == (TradingState.HALTED, TradingState.ACTIVE)


def test_engage_halt_reduce_only_and_release() -> None:
    machine = TradingStateMachine()
    machine.broker_reconciled()
    machine.kill_switch_read()
    machine.kill_switch(True, KillSwitchMode.REDUCE_ONLY)
    assert machine.state is TradingState.REDUCE_ONLY
    machine.kill_switch(True, KillSwitchMode.HALT)
    assert machine.state is TradingState.HALTED
    assert halt_reasons(machine.facts) == (HaltReason.KILL_SWITCH_ENGAGED,)
    machine.kill_switch(False, KillSwitchMode.HALT)
    assert machine.state is TradingState.ACTIVE
    assert [t.after for t in machine.history] == [
        TradingState.ACTIVE,
        TradingState.REDUCE_ONLY,
        TradingState.HALTED,
        TradingState.ACTIVE,
    ]


def test_losing_the_view_halts_until_read_again() -> None:
    machine = TradingStateMachine()
    machine.broker_reconciled()
    machine.kill_switch_read()
    machine.kill_switch_view_lost()
    assert machine.state is TradingState.HALTED
    assert HaltReason.KILL_SWITCH_STATE_UNKNOWN in machine.halt_reasons
    # A release learnt meanwhile does not resume trading: the state is still unknown.
    machine.kill_switch(False, KillSwitchMode.HALT)
    assert machine.state is TradingState.HALTED
    machine.kill_switch_read()
    assert machine.state is TradingState.ACTIVE


def test_losing_the_view_while_halted_stays_halted_after_reread_if_engaged() -> None:
    machine = TradingStateMachine()
    machine.broker_reconciled()
    machine.kill_switch_read()
    machine.kill_switch(True, KillSwitchMode.HALT)
    machine.kill_switch_view_lost()
    machine.kill_switch_read()
    assert machine.state is TradingState.HALTED


def test_shutdown_is_terminal() -> None:
    machine = TradingStateMachine()
    machine.broker_reconciled()
    machine.kill_switch_read()
    machine.begin_shutdown()
    assert machine.state is TradingState.HALTED
    machine.kill_switch(False, KillSwitchMode.HALT)
    machine.kill_switch_read()
    machine.broker_reconciled()
    assert machine.state is TradingState.HALTED
    assert machine.facts.shutting_down


def test_a_kill_switch_clean_up_halts_even_in_reduce_only() -> None:
    machine = TradingStateMachine()
    machine.broker_reconciled()
    machine.kill_switch_read()
    machine.kill_switch(True, KillSwitchMode.REDUCE_ONLY)
    machine.kill_switch_cleanup(True)
    assert machine.state is TradingState.HALTED
    assert HaltReason.KILL_SWITCH_CLEANUP in machine.halt_reasons
    machine.kill_switch_cleanup(False)
    assert machine.state is TradingState.REDUCE_ONLY
