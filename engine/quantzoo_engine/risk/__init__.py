"""Pre-trade risk: every order passes `RiskEngine.evaluate` (risk/checks.py) before any broker sees it."""

from quantzoo_engine.risk.checks import PreTradeContext, Rejection, RejectReason, RiskEngine

__all__ = ["PreTradeContext", "RejectReason", "Rejection", "RiskEngine"]
