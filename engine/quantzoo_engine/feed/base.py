"""What every market-data feed produces (bars) and the small interface the engine drives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    timestamp: datetime  # the bar's own (market) time; staleness is measured on arrival instead
    open: float
    high: float
    low: float
    close: float
    volume: float


class MarketDataFeed(Protocol):
    # Seconds between consecutive bars of one symbol; the data guard counts missing bars with it.
    bar_interval_seconds: float

    def stream(self) -> AsyncIterator[Bar]:
        """Bars as they arrive, until close()."""
        ...

    async def set_symbols(self, symbols: list[str]) -> None:
        """Follow a live change of spec.symbols."""
        ...

    async def close(self) -> None: ...
