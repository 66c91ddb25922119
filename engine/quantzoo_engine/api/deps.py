"""How a request handler reaches the engine of its app instance."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from quantzoo_engine.engine import TradingEngine


def get_engine(request: Request) -> TradingEngine:
    return request.app.state.engine


EngineDep = Annotated[TradingEngine, Depends(get_engine)]
