"""Is spec.strategy something the engine can run? Checked before any child is applied, so a bad one is a
Degraded condition (reason StrategyInvalid, the message naming the field) and no engine trades with it.

The operator's image is the default engine image (the chart passes it to both), so it holds the same
strategies: a name it does not know is refused when the engine runs the default image. A team's image
(`spec.engine.image` set) may carry strategies the operator has never seen: the engine validates those
itself and refuses to start on a bad one (its log names the field). Parameters of a strategy the
operator knows are always checked.
"""

from __future__ import annotations

from quantzoo_api.types import TradingSystemSpec
from quantzoo_engine.sdk import registry


def strategy_problem(spec: TradingSystemSpec) -> str | None:
    """None when the strategy and its parameters are fine (or only the engine's image can tell)."""
    strategy = spec.strategy
    if strategy.name not in registry.available() and spec.engine.image is not None:
        return None
    try:
        registry.validate_params(strategy.name, dict(strategy.params))
    except registry.StrategyConfigError as exc:
        return f"{exc}; the engine does not trade until spec.strategy is fixed"
    return None
