"""The operator's check of spec.strategy (pure): what it refuses, naming the field, and what it leaves to
a team's own engine image."""

from __future__ import annotations

from quantzoo_api.types import parse_spec
from quantzoo_operator.strategy_check import strategy_problem


def test_the_shipped_strategies_with_good_params_pass() -> None:
    assert strategy_problem(parse_spec({})) is None
    assert (
        strategy_problem(parse_spec({"strategy": {"name": "bollingerReversion", "params": {"window": 30}}}))
        is None
    )
    # Old resources carry maCrossover's defaults even with noop: still fine.
    old = {"name": "noop", "params": {"fastWindow": 5, "slowWindow": 20, "orderQuantity": 10}}
    assert strategy_problem(parse_spec({"strategy": old})) is None


def test_a_bad_parameter_is_named() -> None:
    problem = strategy_problem(parse_spec({"strategy": {"params": {"orderQuantity": 0}}}))
    assert problem is not None
    assert problem.startswith("strategy.params.orderQuantity: ")


def test_an_unknown_strategy_on_the_default_image_is_refused() -> None:
    problem = strategy_problem(parse_spec({"strategy": {"name": "martingale"}}))
    assert problem is not None
    assert problem.startswith("strategy.name: unknown strategy 'martingale'")
    assert "maCrossover" in problem  # says what is installed


def test_an_unknown_strategy_on_a_teams_image_is_left_to_that_engine() -> None:
    spec = {"strategy": {"name": "deskAlpha", "params": {"x": 1}}, "engine": {"image": "desk/alpha:1"}}
    assert strategy_problem(parse_spec(spec)) is None
    # ... but a known strategy's parameters are checked whatever the image.
    spec = {"strategy": {"params": {"slowWindow": 2}}, "engine": {"image": "desk/alpha:1"}}
    assert strategy_problem(parse_spec(spec)) is not None
