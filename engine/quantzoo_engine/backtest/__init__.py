"""The backtester: historical bars through the engine's own code path (the same TradingEngine, strategy
object, pre-trade risk checks, kill-switch state machine and paper broker) on a simulated clock, as fast
as the machine allows, and a report (JSON and an HTML page with plots)."""

from quantzoo_engine.backtest.backtester import BacktestResult, run_backtest
from quantzoo_engine.backtest.bars import BarsError, load_bars

__all__ = ["BacktestResult", "BarsError", "load_bars", "run_backtest"]
