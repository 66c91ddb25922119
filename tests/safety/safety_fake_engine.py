"""STAND-IN for the trading engine, for the safety service's own tests only.

It honours the engine contract the safety service codes against (GET /state, POST /admin/kill-switch with
the engine admin token, KillSwitchCommand -> KillSwitchAck) and nothing more: no market data, no broker,
no risk checks. Tests set its numbers directly (drawdown, rejects, heartbeat age, staleness). The
end-to-end tests use the real engine.

Run by hand (for the runbook's curl commands):
    python tests/safety/safety_fake_engine.py --port 8001 --admin-token TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from quantzoo_api.killswitch import KillSwitchAck, KillSwitchCommand, TradingState
from quantzoo_api.types import KillSwitchMode


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeEngineState:
    def __init__(self, admin_token: str) -> None:
        self.admin_token = admin_token
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.kill_switch: dict[str, Any] = {"engaged": False}
        self.trading_state = TradingState.ACTIVE
        self.heartbeat_age = 0.0  # seconds; heartbeat_at = now - age
        self.staleness_seconds = 0.5
        self.stale = False
        self.daily_drawdown_pct = 0.0
        self.rejected = 0
        self.errors_total = 0
        self.working_orders = ["o-1", "o-2"]
        self.positions = ["AAPL"]
        self.commands: list[KillSwitchCommand] = []
        self.admin_delay = 0.0
        self.state_status = 200  # set to 503 to make /state fail
        self.state_calls = 0  # GET /state served (load the safety service puts on the engine)

    def state(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "trading_state": str(self.trading_state),
            "kill_switch": dict(self.kill_switch),
            "last_update": _iso(now - timedelta(seconds=self.staleness_seconds)),
            "heartbeat_at": _iso(now - timedelta(seconds=self.heartbeat_age)),
            "pnl": {
                "unrealized_pnl_pct": -self.daily_drawdown_pct,
                "daily_drawdown_pct": self.daily_drawdown_pct,
            },
            "orders": {
                "submitted": 10,
                "filled": 5,
                "rejected": self.rejected,
                "rejected_by_reason": {"max_order_notional": self.rejected},
                "working": len(self.working_orders),
            },
            "data": {
                "stale": self.stale,
                "staleness_seconds": self.staleness_seconds,
                "missing_bars": 0,
                "outliers": 0,
            },
            "errors_total": self.errors_total,
        }

    def apply(self, cmd: KillSwitchCommand) -> KillSwitchAck:
        with self.lock:
            self.commands.append(cmd)
            cancelled: list[str] = []
            closed: list[str] = []
            if cmd.engaged:
                halt = cmd.mode == KillSwitchMode.HALT
                self.trading_state = TradingState.HALTED if halt else TradingState.REDUCE_ONLY
                if not self.kill_switch.get("engaged"):
                    self.kill_switch = {
                        "engaged": True,
                        "mode": str(cmd.mode),
                        "reason": cmd.reason,
                        "operator": cmd.operator,
                        "source": cmd.source,
                        "since": _iso(datetime.now(UTC)),
                    }
                cancelled, self.working_orders = self.working_orders, []
                if cmd.close_positions:
                    closed, self.positions = self.positions, []
            else:
                self.trading_state = TradingState.ACTIVE
                self.kill_switch = {"engaged": False}
            return KillSwitchAck(
                pod="fake-engine-0",
                engaged=cmd.engaged,
                trading_state=self.trading_state,
                generation=cmd.generation,
                acknowledged_at=datetime.now(UTC),
                cancelled_orders=cancelled,
                closed_positions=closed,
            )


def build_app(engine: FakeEngineState) -> FastAPI:
    app = FastAPI(title="fake engine (stand-in for tests)")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/state")
    async def state() -> dict[str, Any]:
        engine.state_calls += 1
        if engine.state_status != 200:
            raise HTTPException(engine.state_status, "state unavailable")
        return engine.state()

    @app.post("/admin/kill-switch")
    async def kill_switch(cmd: KillSwitchCommand, authorization: str | None = Header(None)) -> KillSwitchAck:
        if authorization != f"Bearer {engine.admin_token}":
            raise HTTPException(401, "bad admin token")
        if engine.admin_delay:
            await asyncio.sleep(engine.admin_delay)
        return engine.apply(cmd)

    return app


class FakeEngineServer:
    """The fake engine served by uvicorn on a loopback port, in a background thread."""

    def __init__(self, admin_token: str) -> None:
        self.engine = FakeEngineState(admin_token)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(self.engine), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> FakeEngineServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake engine did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="stand-in engine for the safety service's tests")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--admin-token", required=True)
    args = parser.parse_args()
    app = build_app(FakeEngineState(args.admin_token))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
