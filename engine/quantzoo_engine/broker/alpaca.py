"""Alpaca through alpaca-py's TradingClient (`paper=True` unless mode is live).

alpaca-py is synchronous (requests), so every call runs in a worker thread under a deadline; the
engine's loop never blocks on Alpaca. The kill path (cancel all, close all) has its own client, its
own threads and its own deadline: alpaca-py retries HTTP 429 three times with 3 s waits (about 9 s),
which is too slow for an emergency stop, so the built-in retries are switched off (on both clients) and
the kill path retries on a short backoff that ends at the deadline. A submit is never re-sent: after an
ambiguous answer (timeout, 5xx) the order is looked up by its client order id instead, and a submit that
reaches its worker thread after new orders were blocked is not sent at all. alpaca-py sets no socket
timeout, so a hanging Alpaca would hold a worker thread forever and, once both kill threads hang,
starve every later cancel: each request here carries a timeout, on the kill path the time left before
its deadline. New orders are already blocked in memory before any of this runs (engine.py), so a slow
or rate-limiting Alpaca delays the clean-up, never the halt.

Credentials rotate without a restart: before every call the broker asks `credentials()` (the mounted
Secret's files, a cheap stat when nothing changed) and, when the pair changed, rebuilds both clients.
Engine state (positions, orders, the kill switch) lives outside the clients and is untouched.

In a shared TradingAccount (`owner` set, broker/ownership.py) the broker shows the engine only what its
system owns: its open orders (by client-order-id prefix), the positions and cash its own fills made,
and a kill path that cancels its own order ids one by one and closes its own quantities with orders of
its own: Alpaca's account-wide cancel-all and close-all are never used then. `account_exposure` reads
the whole account (positions, equity, the last minute's orders) for the account-wide limits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus
from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
)
from alpaca.trading.requests import (
    OrderRequest as AlpacaOrderRequest,
)
from quantzoo_api.accounts import owned_client_order_id

from quantzoo_engine import persistence
from quantzoo_engine.broker.base import (
    AccountExposure,
    AccountSnapshot,
    BrokerError,
    BrokerRejected,
    BrokerThrottled,
    BrokerTimeout,
    CancelReport,
    FlattenReport,
    note_failure,
)
from quantzoo_engine.broker.ownership import OwnedBook
from quantzoo_engine.broker.retry_after import retry_after_seconds
from quantzoo_engine.orders import (
    Fill,
    Order,
    OrderOrigin,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from quantzoo_engine.portfolio import Position

log = logging.getLogger(__name__)

T = TypeVar("T")

OWNED_BOOK_FILE_NAME = "owned-book.json"
_ORDER_PAGE = 500  # Alpaca's largest page
_MAX_PAGES = 200

_FINISHED = {
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "replaced": OrderStatus.CANCELED,
    "done_for_day": OrderStatus.EXPIRED,
}


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def order_from_alpaca(raw: Any) -> Order:
    """alpaca-py's Order model to ours. Statuses we do not model count as working (safe to cancel)."""
    status_text = _value(raw.status)
    if status_text in _FINISHED:
        status = _FINISHED[status_text]
    elif status_text == "partially_filled":
        status = OrderStatus.PARTIALLY_FILLED
    elif status_text == "new":
        status = OrderStatus.NEW
    else:
        status = OrderStatus.ACCEPTED
    type_text = _value(raw.type or raw.order_type)
    order_type = OrderType(type_text) if type_text in set(OrderType) else OrderType.MARKET
    tif_text = _value(raw.time_in_force) if getattr(raw, "time_in_force", None) else "day"
    return Order(
        id=str(raw.id),
        client_order_id=raw.client_order_id,
        symbol=raw.symbol or "",
        side=Side(_value(raw.side)),
        quantity=float(raw.qty or 0),
        order_type=order_type,
        status=status,
        submitted_at=_aware(raw.submitted_at) or datetime.now(UTC),
        limit_price=float(raw.limit_price) if raw.limit_price is not None else None,
        stop_price=float(raw.stop_price) if getattr(raw, "stop_price", None) is not None else None,
        time_in_force=TimeInForce(tif_text) if tif_text in set(TimeInForce) else TimeInForce.DAY,
        filled_quantity=float(raw.filled_qty or 0),
        filled_avg_price=float(raw.filled_avg_price) if raw.filled_avg_price else None,
        updated_at=_aware(raw.updated_at),
        origin=OrderOrigin.RECONCILED,
    )


def position_from_alpaca(raw: Any) -> Position:
    qty = float(raw.qty)
    # Alpaca reports shorts as a negative qty with side "short"; accept either spelling.
    if _value(raw.side) == "short" and qty > 0:
        qty = -qty
    return Position(raw.symbol, qty, float(raw.avg_entry_price))


class _TimeoutSession(requests.Session):
    """A requests session whose every request has a timeout (alpaca-py passes none): the one set for
    the calling thread by `AlpacaBroker._call`, else the default."""

    def __init__(self, default_timeout: float) -> None:
        super().__init__()
        self.default_timeout = default_timeout
        self.per_thread = threading.local()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", getattr(self.per_thread, "timeout", None) or self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def _with_timeouts(client: Any, default_timeout: float) -> _TimeoutSession | None:
    """Give an alpaca-py client a session with timeouts (RESTClient keeps its session in `_session`)."""
    if not hasattr(client, "_session"):
        return None  # a stand-in client in a unit test
    session = _TimeoutSession(default_timeout)
    client._session = session
    return session


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "call")


def _status_code(exc: APIError) -> int | None:
    try:
        return exc.status_code
    except AttributeError:
        return None


def _retry_after(exc: APIError) -> float | None:
    """Alpaca's Retry-After on a 429, in seconds."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After"))


class _Blocked(Exception):
    """The send gate was closed when the worker thread got to the submit."""


def _ambiguous(exc: BrokerError) -> bool:
    """Might the order have been placed? Not after a 429 (refused unprocessed) or another 4xx."""
    return not isinstance(exc, BrokerRejected) and exc.status != 429


class AlpacaBroker:
    name = "alpaca"
    needs_polling = True
    # Set by the engine: False once new orders are blocked (checked in the worker thread, right before
    # the request goes out).
    may_send: Callable[[], bool] | None = None

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        paper: bool = True,
        url_override: str | None = None,
        timeout_seconds: float = 10.0,
        client_factory: Callable[..., TradingClient] = TradingClient,
        credentials: Callable[[], tuple[str, str]] | None = None,
        owner_prefix: str | None = None,
        capital: float = 0.0,
        state_dir: Path | None = None,
    ) -> None:
        self.paper = paper
        self.timeout_seconds = timeout_seconds
        self._factory = client_factory
        self._url_override = url_override
        self._credentials = credentials
        self._pair = (api_key, secret_key)
        self._sessions: dict[int, _TimeoutSession | None] = {}
        self._client, self._kill_client = self._make_clients(api_key, secret_key)
        self.credential_rotations = 0
        """How many times a changed key pair rebuilt the clients."""
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alpaca")
        self._kill_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alpaca-kill")
        self._retry_at = 0.0  # the event loop's time before which Alpaca asked not to be called (Retry-After)
        self._fills: list[Fill] = []
        self._reported_fill_qty: dict[str, float] = {}
        # A system in a shared account: what it owns (None: the whole account is this engine's).
        self.owner_prefix = owner_prefix
        self.capital = capital
        self._state_dir = state_dir
        self.book: OwnedBook | None = None
        if owner_prefix is not None:
            saved = persistence.read_json(state_dir, OWNED_BOOK_FILE_NAME) if state_dir else None
            self.book = OwnedBook.from_json(owner_prefix, saved)

    def _make_clients(self, api_key: str, secret_key: str) -> tuple[TradingClient, TradingClient]:
        client = self._factory(api_key, secret_key, paper=self.paper, url_override=self._url_override)
        kill_client = self._factory(api_key, secret_key, paper=self.paper, url_override=self._url_override)
        # alpaca-py re-sends on 429/504 (3 x 3 s): on the kill path too slow, on submit a second order
        # that may land after a halt was acknowledged. Off on both clients; TradingClient has no public
        # switch, RESTClient keeps the count here. Our own callers retry where it is safe.
        for c in (client, kill_client):
            if hasattr(c, "_retry"):
                c._retry = 0
        self._sessions = {
            id(client): _with_timeouts(client, self.timeout_seconds),
            id(kill_client): _with_timeouts(kill_client, self.timeout_seconds),
        }
        return client, kill_client

    def refresh_credentials(self) -> bool:
        """Rebuild the clients if the key pair changed (True then). Runs before every call."""
        if self._credentials is None:
            return False
        pair = self._credentials()
        if pair == self._pair or not all(pair):
            return False  # unchanged, or mid-rotation with a key missing: keep the last good pair
        self._client, self._kill_client = self._make_clients(*pair)
        self._pair = pair
        self.credential_rotations += 1
        log.info(
            "alpaca credentials changed: trading clients rebuilt (rotation %d)", self.credential_rotations
        )
        return True

    def _method(self, name: str, *, kill: bool = False) -> Callable[..., Any]:
        self.refresh_credentials()
        return getattr(self._kill_client if kill else self._client, name)

    async def _call(
        self,
        fn: Callable[..., T],
        *args: Any,
        timeout: float,
        executor: ThreadPoolExecutor | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> T:
        loop = asyncio.get_running_loop()
        name = _name(fn)
        session = self._session_of(fn)

        def run() -> T:
            # A submit that waited for a free thread until after a halt is not sent.
            if gate is not None and not gate():
                raise _Blocked
            # The request gives up when the caller does, so the worker thread is free again.
            if session is not None:
                session.per_thread.timeout = max(timeout, 0.05)
            try:
                return fn(*args)
            finally:
                if session is not None:
                    session.per_thread.timeout = None

        future = loop.run_in_executor(executor or self._executor, run)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise BrokerTimeout(f"alpaca {name}: no answer within {timeout:.1f}s") from exc
        except APIError as exc:
            code = _status_code(exc)
            if code is not None and 400 <= code < 500 and code != 429:
                raise BrokerRejected(f"alpaca {name}: HTTP {code}: {str(exc)[:200]}") from exc
            retry_after = _retry_after(exc)
            if retry_after is not None:  # Alpaca's limit is the account's: orders and the kill path wait
                self._retry_at = max(self._retry_at, loop.time() + retry_after)
            raise BrokerError(f"alpaca {name}: HTTP {code}", status=code, retry_after=retry_after) from exc
        except requests.RequestException as exc:
            raise BrokerError(f"alpaca {name}: {type(exc).__name__}") from exc

    def _session_of(self, fn: Callable[..., Any]) -> _TimeoutSession | None:
        owner = getattr(getattr(fn, "func", fn), "__self__", None)
        return self._sessions.get(id(owner)) if owner is not None else None

    async def _kill_call(self, method: str, *args: Any, deadline_at: float, **kwargs: Any) -> Any:
        """Retry retryable failures (429, 5xx, network) on a short backoff until the deadline; never
        sooner than Alpaca's last Retry-After allows, also on the next kill path (a second engage, the
        retry of an unfinished clean-up): a call sooner is one it said it will refuse."""
        loop = asyncio.get_running_loop()
        attempt = 0
        last: BrokerError | None = None
        while True:
            remaining = deadline_at - loop.time()
            wait = max(self._retry_at - loop.time(), 0.0)
            if remaining <= 0 or wait >= remaining:
                told = f"; Retry-After {wait:.1f}s left" if wait else ""
                cause = f" ({last}{told})" if last or told else ""
                raise BrokerTimeout(
                    f"alpaca {method}: kill-path deadline reached after {attempt} attempts{cause}",
                    retry_after=wait or None,
                ) from last
            if wait:
                await asyncio.sleep(wait)
                remaining = deadline_at - loop.time()
            fn = functools.partial(self._method(method, kill=True), **kwargs)
            try:
                return await self._call(fn, *args, timeout=remaining, executor=self._kill_executor)
            except BrokerError as exc:
                if not exc.retryable:
                    raise
                attempt, last = attempt + 1, exc
                if exc.retry_after is not None:
                    continue  # _call noted it: the loop's top waits it out, or gives up at the deadline
                backoff = min(0.05 * 2**attempt, 0.5)
                if deadline_at - loop.time() - backoff <= 0:
                    raise BrokerTimeout(
                        f"alpaca {method}: kill-path deadline reached after {attempt} attempts ({exc})"
                    ) from exc
                await asyncio.sleep(backoff)

    # --- reads -------------------------------------------------------------------------------------------
    async def connect(self) -> None:
        # Proves credentials and reachability before the engine reconciles.
        await self._call(self._method("get_account"), timeout=self.timeout_seconds)

    async def account(self) -> AccountSnapshot:
        if self.book is not None:
            # The system's own: its capital plus what its fills brought in (positions at cost; the
            # engine marks them). Read first by a reconcile, so it brings the book up to date.
            await self.refresh_book()
            cash = self.capital + self.book.cash_delta
            at_cost = sum(p.quantity * p.avg_price for p in self.book.positions.values())
            return AccountSnapshot(cash=cash, equity=cash + at_cost)
        raw = await self._call(self._method("get_account"), timeout=self.timeout_seconds)
        equity = float(raw.equity or 0)
        return AccountSnapshot(
            cash=float(raw.cash or 0),
            equity=equity,
            last_equity=float(raw.last_equity) if raw.last_equity else None,
        )

    async def positions(self) -> list[Position]:
        if self.book is not None:
            return self.book.position_list()  # as of the refresh account() just made
        raw = await self._call(self._method("get_all_positions"), timeout=self.timeout_seconds)
        return [position_from_alpaca(p) for p in raw]

    async def open_orders(self) -> list[Order]:
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_ORDER_PAGE)
        raw = await self._call(self._method("get_orders"), request, timeout=self.timeout_seconds)
        orders = [order_from_alpaca(o) for o in raw]
        return orders if self.book is None else [o for o in orders if self.book.owns(o)]

    async def refresh_book(self, *, kill: bool = False, deadline_at: float | None = None) -> None:
        """Read the system's own orders since the book's cursor (all statuses, oldest first, page by
        page) and count their fills; then save the book (no fsync: a lost file means a full replay)."""
        assert self.book is not None
        now = datetime.now(UTC)
        after = self.book.cursor - timedelta(seconds=1) if self.book.cursor else None
        for _ in range(_MAX_PAGES):
            request = GetOrdersRequest(
                status=QueryOrderStatus.ALL, limit=_ORDER_PAGE, after=after, direction=Sort.ASC
            )
            if kill and deadline_at is not None:
                raw = await self._kill_call("get_orders", request, deadline_at=deadline_at)
            else:
                raw = await self._call(self._method("get_orders"), request, timeout=self.timeout_seconds)
            page = [order_from_alpaca(o) for o in raw]
            for order in page:
                self.book.observe(order, now)
            if len(page) < _ORDER_PAGE:
                break
            last = max(o.submitted_at for o in page)
            if after is not None and last <= after:
                break  # a page of one instant: nothing newer can be asked for
            after = last - timedelta(milliseconds=1)
        self.book.advance_cursor(now)
        if self._state_dir is not None:
            try:
                persistence.write_json(
                    self._state_dir, OWNED_BOOK_FILE_NAME, self.book.to_json(), fsync=False
                )
            except OSError as exc:
                log.warning("could not save the owned book: %s", exc)

    async def _count_orders_since(self, since: datetime) -> int:
        """How many orders the whole account placed since `since` (a page at a time, oldest first)."""
        seen: set[str] = set()
        after = since
        for _ in range(_MAX_PAGES):
            request = GetOrdersRequest(
                status=QueryOrderStatus.ALL, limit=_ORDER_PAGE, after=after, direction=Sort.ASC
            )
            page = await self._call(self._method("get_orders"), request, timeout=self.timeout_seconds)
            seen.update(str(o.id) for o in page if (_aware(o.submitted_at) or since) >= since)
            if len(page) < _ORDER_PAGE:
                break
            last = max(_aware(o.submitted_at) or since for o in page)
            if last <= after:
                break
            after = last - timedelta(milliseconds=1)
        return len(seen)

    async def account_exposure(self) -> AccountExposure:
        """The whole account, for the account-wide limits: three reads side by side."""
        since = datetime.now(UTC) - timedelta(seconds=60)
        account, positions, last_minute = await asyncio.gather(
            self._call(self._method("get_account"), timeout=self.timeout_seconds),
            self._call(self._method("get_all_positions"), timeout=self.timeout_seconds),
            self._count_orders_since(since),
        )
        gross = sum(abs(float(p.market_value or 0)) for p in positions)
        return AccountExposure(
            gross_exposure=gross,
            equity=float(account.equity or 0),
            last_equity=float(account.last_equity) if account.last_equity else None,
            orders_last_minute=last_minute,
        )

    # --- orders ------------------------------------------------------------------------------------------
    async def submit_order(self, request: OrderRequest) -> Order:
        common: dict[str, Any] = {
            "symbol": request.symbol,
            "qty": request.quantity,
            "side": OrderSide(str(request.side)),
            "time_in_force": AlpacaTimeInForce(str(request.time_in_force)),
            "client_order_id": request.client_order_id,
        }
        kind = request.order_type
        alpaca_request: AlpacaOrderRequest
        if kind is OrderType.LIMIT:
            alpaca_request = LimitOrderRequest(limit_price=request.limit_price, **common)
        elif kind is OrderType.STOP:
            alpaca_request = StopOrderRequest(stop_price=request.stop_price, **common)
        elif kind is OrderType.STOP_LIMIT:
            alpaca_request = StopLimitOrderRequest(
                limit_price=request.limit_price, stop_price=request.stop_price, **common
            )
        else:
            alpaca_request = MarketOrderRequest(**common)
        wait = self._retry_at - asyncio.get_running_loop().time()
        if wait > 0:
            raise BrokerThrottled(
                f"alpaca submit_order: not sent, Alpaca asked to wait {wait:.1f}s more (Retry-After)", wait
            )
        try:
            raw = await self._call(
                self._method("submit_order"), alpaca_request, timeout=self.timeout_seconds, gate=self.may_send
            )
        except _Blocked:
            raise BrokerRejected("alpaca submit_order: not sent, trading was halted meanwhile") from None
        except BrokerError as exc:
            if not _ambiguous(exc):
                raise
            raw = await self._find_by_client_order_id(request.client_order_id, exc)
        order = order_from_alpaca(raw)
        order.origin = request.origin
        self._note_fill(order)
        return order

    async def _find_by_client_order_id(self, client_order_id: str, cause: BrokerError) -> Any:
        """After an answer that does not say whether the order was placed (timeout, 5xx, cut connection):
        ask Alpaca by client order id, once. Found: it was placed. Not found: it was not."""
        try:
            return await self._call(
                self._method("get_order_by_client_id"), client_order_id, timeout=self.timeout_seconds
            )
        except BrokerRejected as exc:  # 404: never placed
            raise BrokerError(f"{cause} (order not placed: {exc})", retryable=False) from cause
        except BrokerError as exc:
            # Still unknown: the periodic reconcile adopts it if it did land (and a kill cancels it).
            log.warning("order outcome unknown after %s; lookup failed: %s", cause, exc)
            raise BrokerError(f"{cause} (outcome unknown: {exc})") from cause

    def _note_fill(self, order: Order) -> None:
        if self.book is not None:
            fill = self.book.observe(order, datetime.now(UTC))
            if fill is not None:
                self._fills.append(fill)
            return
        # Alpaca may answer a market order already filled; report that fill once. Later fills are
        # learnt from the periodic reconcile of positions (the broker is the source of truth).
        already = self._reported_fill_qty.get(order.id, 0.0)
        new_qty = order.filled_quantity - already
        if new_qty > 0 and order.filled_avg_price:
            self._reported_fill_qty[order.id] = order.filled_quantity
            self._fills.append(
                Fill(order.id, order.symbol, order.side, new_qty, order.filled_avg_price, datetime.now(UTC))
            )

    def drain_fills(self) -> list[Fill]:
        fills, self._fills = self._fills, []
        return fills

    def on_price(self, symbol: str, price: float, at: datetime) -> None:
        return None

    # --- the kill path -------------------------------------------------------------------------------------
    async def cancel_all_orders(self, deadline_seconds: float) -> CancelReport:
        deadline_at = asyncio.get_running_loop().time() + deadline_seconds
        if self.book is not None:
            return await self._cancel_own(deadline_at)
        report = CancelReport()
        try:
            responses = await self._kill_call("cancel_orders", deadline_at=deadline_at)
        except BrokerError as exc:
            note_failure(report, str(exc), exc)
            return report
        for item in responses:  # HTTP 207: one status per order
            if 200 <= item.status < 300:
                report.cancelled.append(str(item.id))
            else:
                report.errors.append(f"cancel {item.id}: HTTP {item.status}")
        return report

    async def close_all_positions(self, deadline_seconds: float) -> FlattenReport:
        deadline_at = asyncio.get_running_loop().time() + deadline_seconds
        if self.book is not None:
            return await self._close_own(deadline_at)
        report = FlattenReport()
        try:
            responses = await self._kill_call(
                "close_all_positions", cancel_orders=True, deadline_at=deadline_at
            )
        except BrokerError as exc:
            note_failure(report, str(exc), exc)
            return report
        for item in responses:  # HTTP 207: one status per symbol
            if item.status is not None and 200 <= item.status < 300:
                report.closed.append(item.symbol or "")
            else:
                report.errors.append(f"close {item.symbol}: HTTP {item.status}")
        return report

    async def _cancel_own(self, deadline_at: float) -> CancelReport:
        """Cancel this system's working orders by id; never another system's, never all."""
        report = CancelReport()
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_ORDER_PAGE)
        try:
            raw = await self._kill_call("get_orders", request, deadline_at=deadline_at)
        except BrokerError as exc:
            note_failure(report, str(exc), exc)
            return report
        assert self.book is not None
        mine = [o for o in (order_from_alpaca(r) for r in raw) if self.book.owns(o)]

        async def cancel(order_id: str) -> None:
            try:
                await self._kill_call("cancel_order_by_id", order_id, deadline_at=deadline_at)
                report.cancelled.append(order_id)
            except BrokerError as exc:
                note_failure(report, f"cancel {order_id}: {exc}", exc)

        await asyncio.gather(*(cancel(o.id) for o in mine))
        return report

    async def _close_own(self, deadline_at: float) -> FlattenReport:
        """Close this system's own quantities with market orders of its own (its book, read afresh)."""
        report = FlattenReport()
        assert self.book is not None
        try:
            await self.refresh_book(kill=True, deadline_at=deadline_at)
        except BrokerError as exc:
            note_failure(report, f"read own orders: {exc}", exc)
            return report  # closing a stale quantity could overshoot into another system's position

        async def close(position: Position) -> None:
            assert self.book is not None
            request = MarketOrderRequest(
                symbol=position.symbol,
                qty=abs(position.quantity),
                side=OrderSide.SELL if position.quantity > 0 else OrderSide.BUY,
                time_in_force=AlpacaTimeInForce.DAY,
                client_order_id=owned_client_order_id(self.book.prefix),
            )
            try:
                raw = await self._kill_call("submit_order", request, deadline_at=deadline_at)
            except BrokerError as exc:
                note_failure(report, f"close {position.symbol}: {exc}", exc)
                return
            order = order_from_alpaca(raw)
            order.origin = OrderOrigin.KILL_SWITCH
            self._note_fill(order)
            report.closed.append(position.symbol)

        await asyncio.gather(*(close(p) for p in self.book.position_list()))
        return report

    async def close(self) -> None:
        # Do not wait for threads stuck on a slow Alpaca: they hold no state we need.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._kill_executor.shutdown(wait=False, cancel_futures=True)
