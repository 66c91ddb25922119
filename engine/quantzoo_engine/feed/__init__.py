"""Market data: feeds that produce bars, and the guard that decides which bars to believe."""

from quantzoo_engine.feed.base import Bar, MarketDataFeed

__all__ = ["Bar", "MarketDataFeed"]
