"""The strategies QuantZoo ships (each registered in the `quantzoo.strategies` entry-point group, like
any user's) and the runners that call a strategy inline (backtest) or in a process of its own (live)."""

from quantzoo_engine.strategy.bollinger import BollingerReversion
from quantzoo_engine.strategy.breakout import Breakout
from quantzoo_engine.strategy.ma_crossover import MovingAverageCrossover
from quantzoo_engine.strategy.noop import NoopStrategy

__all__ = ["BollingerReversion", "Breakout", "MovingAverageCrossover", "NoopStrategy"]
