"""Finding a strategy by name (entry-point group `quantzoo.strategies`) and validating its parameters.

A bad spec is a StrategyConfigError naming the field (`strategy.name` or `strategy.params.<field>`):
the operator turns it into a Degraded condition, the engine refuses to trade with it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError
from quantzoo_api.types import StrategySpec

from quantzoo_engine.sdk.strategy import Strategy, StrategyParams

ENTRY_POINT_GROUP = "quantzoo.strategies"


class StrategyConfigError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@cache
def available() -> dict[str, EntryPoint]:
    """Every strategy installed in this Python environment, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def strategy_class(name: str) -> type[Strategy[Any]]:
    ep = available().get(name)
    if ep is None:
        known = ", ".join(sorted(available())) or "none"
        raise StrategyConfigError("strategy.name", f"unknown strategy {name!r} (installed: {known})")
    try:
        cls = ep.load()
    except Exception as exc:  # user code: an import error is a configuration error, not a crash
        raise StrategyConfigError("strategy.name", f"strategy {name!r} failed to load: {exc!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyConfigError("strategy.name", f"{ep.value} is not a quantzoo_engine.sdk.Strategy")
    return cls


def validate_params(name: str, params: dict[str, Any]) -> StrategyParams:
    cls = strategy_class(name)
    try:
        return cls.Params.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f"strategy.params.{where}" if where else "strategy.params"
        raise StrategyConfigError(field, first["msg"]) from None


def build(spec: StrategySpec) -> Strategy[Any]:
    """The strategy `spec` names, with its validated parameters (raises StrategyConfigError)."""
    params = validate_params(spec.name, dict(spec.params))
    return strategy_class(spec.name)(params)
