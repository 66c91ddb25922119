"""A local server that speaks Alpaca's wire format, for the real alpaca-py client to talk to.

REST (trading API v2): `/v2/account`, `/v2/orders` GET/POST/DELETE (DELETE answers 207, one status per
order), `/v2/orders:by_client_order_id` GET, `/v2/orders/{id}` DELETE, `/v2/positions` GET and DELETE
with `cancel_orders` (207, one status per symbol). Amounts are strings, as Alpaca sends them. Auth
headers APCA-API-KEY-ID/-SECRET-KEY.
A `rate_limited` switch answers every REST call with 429. `faults` injects failures per route
("DELETE /v2/orders" -> `Fault`): an HTTP status (429 with Retry-After, 500, ...) and/or a hanging answer.

Market data: a msgpack websocket at /stream (what StockDataStream's url_override points at):
`[{"T":"success","msg":"connected"}]`, auth -> `authenticated`, subscribe -> `subscription`, then the
queued bars, with `t` as a msgpack Timestamp.

Only the current key pair is accepted (`rotate()` replaces it, as revoking the old key at Alpaca would;
`rotate(..., revoke_old=False)` keeps the old pair valid until `revoke_previous()`, the runbook's order);
anything else gets Alpaca's 401 `{"code": 40110000, "message": "request is not authorized"}`. Which key
id each request came with is recorded, so a test can tell old-key from new-key traffic.

This is a stand-in for Alpaca's servers only; the client under test is the real alpaca-py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack
import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

KEY, SECRET = "test-key-id", "test-secret-key"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Fault:
    """What a route does instead of its job: hang first (until the client hangs up, at most
    `hang_seconds`), then answer `status` if set, else do the job late. `lose_answer`: do the job, then
    answer `status` anyway (the order was placed, the client cannot tell). `times`: only the first N hits."""

    status: int | None = None
    retry_after: int | None = None
    hang_seconds: float = 0.0
    lose_answer: bool = False
    times: int | None = None


class FakeAlpaca:
    def __init__(self) -> None:
        self.cash = 100_000.0
        self.last_equity = 100_000.0
        self.prices: dict[str, float] = {"AAPL": 190.0, "MSFT": 410.0}
        self.orders: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, dict[str, float]] = {}
        self.uncancelable: set[str] = set()
        self.rate_limited = False
        self.faults: dict[str, Fault] = {}
        self.fault_hits: dict[str, int] = {}
        self.fault_times: dict[str, list[float]] = {}  # time.monotonic() of each hit, per route
        self.requests: list[str] = []
        self.bars: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.key, self.secret = KEY, SECRET
        self.previous: tuple[str, str] | None = None  # a rotated-out pair still valid (not revoked yet)
        self.accepted: list[tuple[str, str]] = []  # (key id, "METHOD /path") of each authorised call
        self.refused: list[tuple[str, str]] = []  # (key id, "METHOD /path") of each 401
        self.app = self._build()

    def rotate(self, key: str, secret: str, *, revoke_old: bool = True) -> None:
        """From now on this pair is accepted; the previous one is refused, unless `revoke_old` is False
        (then until `revoke_previous()`)."""
        self.previous = None if revoke_old else (self.key, self.secret)
        self.key, self.secret = key, secret

    def revoke_previous(self) -> None:
        self.previous = None

    def orders_by_key(self, key: str) -> int:
        return sum(1 for k, call in self.accepted if k == key and call == "POST /v2/orders")

    # --- state -----------------------------------------------------------------------------------------
    def _order_json(self, o: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": o["id"],
            "client_order_id": o["client_order_id"],
            "created_at": o["created_at"],
            "updated_at": o["updated_at"],
            "submitted_at": o["created_at"],
            "filled_at": o.get("filled_at"),
            "expired_at": None,
            "canceled_at": o.get("canceled_at"),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
            "symbol": o["symbol"],
            "asset_class": "us_equity",
            "notional": None,
            "qty": str(o["qty"]),
            "filled_qty": str(o["filled_qty"]),
            "filled_avg_price": str(o["filled_avg_price"]) if o["filled_avg_price"] is not None else None,
            "order_class": "",
            "order_type": o["type"],
            "type": o["type"],
            "side": o["side"],
            "time_in_force": o.get("time_in_force", "day"),
            "limit_price": str(o["limit_price"]) if o["limit_price"] is not None else None,
            "stop_price": str(o["stop_price"]) if o.get("stop_price") is not None else None,
            "status": o["status"],
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }

    def _position_json(self, symbol: str) -> dict[str, Any]:
        p = self.positions[symbol]
        price = self.prices[symbol]
        qty = p["qty"]
        return {
            "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
            "symbol": symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_equity",
            "asset_marginable": True,
            "avg_entry_price": str(p["avg"]),
            "qty": str(qty),
            "qty_available": str(qty),
            "side": "long" if qty > 0 else "short",
            "market_value": str(qty * price),
            "cost_basis": str(qty * p["avg"]),
            "unrealized_pl": str(qty * (price - p["avg"])),
            "current_price": str(price),
        }

    def equity(self) -> float:
        return self.cash + sum(p["qty"] * self.prices[s] for s, p in self.positions.items())

    def _fill(self, o: dict[str, Any], price: float) -> None:
        signed = o["qty"] if o["side"] == "buy" else -o["qty"]
        pos = self.positions.get(o["symbol"], {"qty": 0.0, "avg": price})
        new_qty = pos["qty"] + signed
        if pos["qty"] == 0 or (pos["qty"] > 0) == (signed > 0):
            pos["avg"] = (pos["avg"] * abs(pos["qty"]) + price * abs(signed)) / abs(new_qty)
        pos["qty"] = new_qty
        if new_qty == 0:
            self.positions.pop(o["symbol"], None)
        else:
            self.positions[o["symbol"]] = pos
        self.cash -= signed * price
        o.update(
            status="filled", filled_qty=o["qty"], filled_avg_price=price, filled_at=_now(), updated_at=_now()
        )

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["status"] in ("new", "accepted", "partially_filled")]

    def _new_order(
        self,
        symbol: str,
        qty: float,
        side: str,
        type_: str,
        limit: float | None,
        coid: str,
        stop: float | None = None,
        tif: str = "day",
    ) -> dict:
        o = {
            "id": str(uuid.uuid4()),
            "client_order_id": coid,
            "symbol": symbol,
            "qty": qty,
            "side": side,
            "type": type_,
            "limit_price": limit,
            "stop_price": stop,
            "time_in_force": tif,
            "filled_qty": 0,
            "filled_avg_price": None,
            "status": "new",
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.orders[o["id"]] = o
        price = self.prices[symbol]
        # Stops rest here (this fake has no price feed to trigger them).
        marketable = type_ == "market" or (
            type_ == "limit" and ((side == "buy" and price <= limit) or (side == "sell" and price >= limit))
        )
        if marketable:
            self._fill(o, price)
        return o

    # --- the app -------------------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI()

        def error(status: int, code: int, message: str) -> JSONResponse:
            return JSONResponse({"code": code, "message": message}, status_code=status)

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Response:
            query = f"?{request.url.query}" if request.url.query else ""
            self.requests.append(f"{request.method} {request.url.path}{query}")
            if self.rate_limited:
                return error(429, 42910000, "rate limit exceeded")
            route = f"{request.method} {request.url.path}"
            fault = self.faults.get(route)
            if fault is not None and fault.times is not None and self.fault_hits.get(route, 0) >= fault.times:
                fault = None
            if fault is not None:
                self.fault_hits[route] = self.fault_hits.get(route, 0) + 1
                self.fault_times.setdefault(route, []).append(time.monotonic())
                if fault.hang_seconds:
                    await request.body()  # read (and keep for the route) before listening for a hang-up
                    # Hang until the client gives up (closes the connection) or the time is over.
                    end = asyncio.get_running_loop().time() + fault.hang_seconds
                    while asyncio.get_running_loop().time() < end:
                        if await request.is_disconnected():
                            return Response(status_code=499)
                        await asyncio.sleep(0.05)
                if fault.status is not None and not fault.lose_answer:
                    response = error(fault.status, fault.status * 100000, "injected fault")
                    if fault.retry_after is not None:
                        response.headers["Retry-After"] = str(fault.retry_after)
                    return response
            key_id = request.headers.get("APCA-API-KEY-ID") or ""
            pair = (key_id, request.headers.get("APCA-API-SECRET-KEY"))
            if pair not in ((self.key, self.secret), self.previous):
                self.refused.append((key_id, route))
                return error(401, 40110000, "request is not authorized")
            self.accepted.append((key_id, route))
            response = await call_next(request)
            if fault is not None and fault.lose_answer and fault.status is not None:
                return error(fault.status, fault.status * 100000, "injected fault (the job was done)")
            return response

        @app.get("/v2/account")
        async def account() -> dict[str, Any]:
            equity = self.equity()
            return {
                "id": "904837e3-3b76-47ec-b432-046db621571b",
                "account_number": "PA0TESTING",
                "status": "ACTIVE",
                "currency": "USD",
                "cash": str(self.cash),
                "buying_power": str(self.cash * 2),
                "portfolio_value": str(equity),
                "equity": str(equity),
                "last_equity": str(self.last_equity),
                "trading_blocked": False,
                "account_blocked": False,
                "trade_suspended_by_user": False,
                "multiplier": "2",
                "shorting_enabled": True,
                "long_market_value": "0",
                "short_market_value": "0",
                "created_at": "2024-01-02T15:00:00Z",
            }

        @app.get("/v2/orders")
        async def list_orders(status: str = "open") -> list[dict[str, Any]]:
            chosen = self.open_orders() if status == "open" else list(self.orders.values())
            return [self._order_json(o) for o in chosen]

        @app.post("/v2/orders")
        async def submit(request: Request) -> Response:
            try:
                body = await request.json()
                symbol, side, type_ = body["symbol"], body["side"], body["type"]
                qty = float(body["qty"])
                limit = float(body["limit_price"]) if body.get("limit_price") is not None else None
                stop = float(body["stop_price"]) if body.get("stop_price") is not None else None
                tif = str(body.get("time_in_force", "day"))
            except (ValueError, KeyError, TypeError):
                return error(422, 40010000, "invalid order request")
            if symbol not in self.prices:
                return error(422, 40010001, f"asset {symbol} not found")
            coid = body.get("client_order_id") or str(uuid.uuid4())
            if any(o["client_order_id"] == coid for o in self.orders.values()):
                return error(422, 40010001, "client_order_id must be unique")
            if qty <= 0 or (type_ == "limit" and limit is None):
                return error(422, 40010001, "qty must be > 0")
            if type_ in ("stop", "stop_limit") and stop is None:
                return error(422, 40010001, "stop_price is required")
            o = self._new_order(symbol, qty, side, type_, limit, coid, stop, tif)
            return JSONResponse(self._order_json(o))

        @app.get("/v2/orders:by_client_order_id")
        async def by_client_order_id(client_order_id: str) -> Response:
            for o in self.orders.values():
                if o["client_order_id"] == client_order_id:
                    return JSONResponse(self._order_json(o))
            return error(404, 40410000, "order not found")

        @app.delete("/v2/orders")
        async def cancel_all() -> JSONResponse:
            results = []
            for o in self.open_orders():
                if o["id"] in self.uncancelable:
                    results.append(
                        {
                            "id": o["id"],
                            "status": 422,
                            "body": {"code": 42210000, "message": "not cancelable"},
                        }
                    )
                    continue
                o.update(status="canceled", canceled_at=_now(), updated_at=_now())
                results.append({"id": o["id"], "status": 200, "body": {}})
            return JSONResponse(results, status_code=207)

        @app.delete("/v2/orders/{order_id}")
        async def cancel_one(order_id: str) -> Response:
            o = self.orders.get(order_id)
            if o is None:
                return error(404, 40410000, "order not found")
            o.update(status="canceled", canceled_at=_now())
            return Response(status_code=204)

        @app.get("/v2/positions")
        async def positions() -> list[dict[str, Any]]:
            return [self._position_json(s) for s in self.positions]

        @app.delete("/v2/positions")
        async def close_all(cancel_orders: str | None = None) -> JSONResponse:
            if cancel_orders is not None and cancel_orders.lower() == "true":
                for o in self.open_orders():
                    o.update(status="canceled", canceled_at=_now())
            results = []
            for symbol, p in list(self.positions.items()):
                side = "sell" if p["qty"] > 0 else "buy"
                o = self._new_order(symbol, abs(p["qty"]), side, "market", None, str(uuid.uuid4()))
                results.append({"symbol": symbol, "status": 200, "body": self._order_json(o)})
            return JSONResponse(results, status_code=207)

        @app.websocket("/stream")
        async def stream(ws: WebSocket) -> None:
            await ws.accept()
            await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "connected"}]))
            try:
                auth = msgpack.unpackb(await ws.receive_bytes())
                pair = (auth.get("key"), auth.get("secret"))
                if auth.get("action") != "auth" or pair not in ((self.key, self.secret), self.previous):
                    await ws.send_bytes(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
                    await ws.close()
                    return
                await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
                sub = msgpack.unpackb(await ws.receive_bytes())
                self.subscriptions.append(sub)
                wanted = set(sub.get("bars", []))
                await ws.send_bytes(
                    msgpack.packb([{"T": "subscription", "trades": [], "quotes": [], "bars": sorted(wanted)}])
                )
                for bar in self.bars:
                    if bar["S"] in wanted:
                        await ws.send_bytes(msgpack.packb([bar]))
                while True:  # stay connected until the client leaves
                    await ws.receive_bytes()
            except WebSocketDisconnect:
                return

        return app

    def queue_bar(self, symbol: str, close: float, at: datetime) -> None:
        self.bars.append(
            {
                "T": "b",
                "S": symbol,
                "o": close,
                "h": close + 0.5,
                "l": close - 0.5,
                "c": close,
                "v": 1200,
                "t": msgpack.Timestamp.from_datetime(at),
                "n": 42,
                "vw": close,
            }
        )


class ServerThread:
    """uvicorn in a thread (signals stay with the test process), on loopback unless `host` says otherwise
    (tests on real pods bind the node's own address, which pods reach through their gateway)."""

    def __init__(self, app: FastAPI, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, name="fake-alpaca", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("fake Alpaca server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)
