"""Alpaca market data through alpaca-py's StockDataStream (msgpack over a websocket).

alpaca-py runs its own event loop (`StockDataStream.run()`), so the stream lives in a thread of its own
and hands bars to the engine's loop through a queue. A slow or dead stream therefore cannot block the
engine; it only makes the data stale, and stale data halts new orders.

Rotated credentials (`credentials()`, the mounted Secret's files) are handed to the stream at least once
a second; an open, authenticated connection keeps going, and the next (re)connect authenticates with the
new pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any

from alpaca.data.enums import DataFeed
from alpaca.data.live import StockDataStream

from quantzoo_engine.feed.base import Bar

log = logging.getLogger(__name__)

ALPACA_BAR_INTERVAL_SECONDS = 60.0


def bar_from_alpaca(raw: Any) -> Bar:
    """An alpaca-py `Bar` model to our Bar."""
    ts = raw.timestamp
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return Bar(
        symbol=raw.symbol,
        timestamp=ts,
        open=float(raw.open),
        high=float(raw.high),
        low=float(raw.low),
        close=float(raw.close),
        volume=float(raw.volume),
    )


class AlpacaFeed:
    def __init__(
        self,
        symbols: list[str],
        api_key: str,
        secret_key: str,
        url_override: str | None = None,
        feed: DataFeed = DataFeed.IEX,
        credentials: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.bar_interval_seconds = ALPACA_BAR_INTERVAL_SECONDS
        self._symbols = list(dict.fromkeys(symbols))
        self._stream = StockDataStream(api_key, secret_key, feed=feed, url_override=url_override)
        self._credentials = credentials
        self._pair = (api_key, secret_key)
        self._queue: asyncio.Queue[Bar] | None = None
        self._thread: threading.Thread | None = None
        self._handler: Callable[[Any], Awaitable[None]] | None = None
        self._closed = False

    async def stream(self) -> AsyncIterator[Bar]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Bar] = asyncio.Queue(maxsize=10_000)
        self._queue = queue

        async def on_bar(raw: Any) -> None:
            # Runs on alpaca-py's loop, in its thread: hand over, never block there.
            bar = bar_from_alpaca(raw)
            loop.call_soon_threadsafe(self._offer, queue, bar)

        self._handler = on_bar
        self._stream.subscribe_bars(on_bar, *self._symbols)
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-data-stream", daemon=True)
        self._thread.start()
        while not self._closed:
            self.refresh_credentials()
            try:
                bar = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                continue
            yield bar

    def refresh_credentials(self) -> bool:
        """Give the stream a rotated key pair for its next (re)connect; True when it changed."""
        if self._credentials is None:
            return False
        pair = self._credentials()
        if pair == self._pair or not all(pair):
            return False
        # alpaca-py reads these two attributes when it authenticates a (re)connection.
        self._stream._api_key, self._stream._secret_key = pair
        self._pair = pair
        log.info("alpaca credentials changed: the data stream uses them from its next connection")
        return True

    @staticmethod
    def _offer(queue: asyncio.Queue[Bar], bar: Bar) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(bar)

    async def set_symbols(self, symbols: list[str]) -> None:
        wanted = list(dict.fromkeys(symbols))
        added = [s for s in wanted if s not in self._symbols]
        removed = [s for s in self._symbols if s not in wanted]
        self._symbols = wanted
        if self._thread is None:
            return
        # subscribe/unsubscribe block until alpaca-py's loop has sent the message: keep them off ours.
        if added and self._handler is not None:
            await asyncio.to_thread(self._stream.subscribe_bars, self._handler, *added)
        if removed:
            await asyncio.to_thread(self._stream.unsubscribe_bars, *removed)

    async def close(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        await asyncio.to_thread(self._stop_thread, thread)

    def _stop_thread(self, thread: threading.Thread) -> None:
        stream_loop = self._stream._loop
        if stream_loop is not None and stream_loop.is_running():
            # stop_ws asks the consume loop to end; close() breaks a recv() that would otherwise wait
            # up to 5 s for the next frame.
            for coro in (self._stream.stop_ws(), self._stream.close()):
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(coro, stream_loop).result(timeout=5)
        thread.join(timeout=5)
        if thread.is_alive():
            log.warning("alpaca data stream thread did not stop within 5 s")
