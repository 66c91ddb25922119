"""A STAND-IN for the engine's admin API, for the operator's tests (not the real engine).

kwok pods run nothing, so the operator's kill-switch pushes need a real HTTP endpoint to land on. This
small FastAPI app honours the contract the operator relies on -- `POST /admin/kill-switch` with the
engine admin token as a bearer token, answering a `KillSwitchAck` -- plus `GET /state`, and records every
command it received. It runs in a thread on a free loopback port and can be stopped and started again on
the same port (an unreachable replica that comes back). The real engine (`python -m quantzoo_engine`)
is exercised by the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from datetime import UTC, datetime

import httpx
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from quantzoo_api.killswitch import KillSwitchAck, KillSwitchCommand, TradingState
from quantzoo_api.types import KillSwitchMode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandInEngine:
    def __init__(self, token: str, pod: str = "standin-engine-0", port: int | None = None) -> None:
        self.token = token
        self.pod = pod
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.commands: list[KillSwitchCommand] = []
        self.unauthorized = 0
        self.trading_state = TradingState.ACTIVE
        self.engaged = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI(title="stand-in engine (tests only)")

        @app.post("/admin/kill-switch")
        async def kill_switch(command: KillSwitchCommand, authorization: str = Header("")) -> KillSwitchAck:
            if not secrets.compare_digest(authorization, f"Bearer {self.token}"):
                self.unauthorized += 1
                raise HTTPException(status_code=401, detail="unauthorized")
            self.commands.append(command)
            self.engaged = command.engaged
            if not command.engaged:
                self.trading_state = TradingState.ACTIVE
            elif command.mode is KillSwitchMode.REDUCE_ONLY:
                self.trading_state = TradingState.REDUCE_ONLY
            else:
                self.trading_state = TradingState.HALTED
            return KillSwitchAck(
                pod=self.pod,
                engaged=command.engaged,
                trading_state=self.trading_state,
                generation=command.generation,
                acknowledged_at=datetime.now(UTC),
                cancelled_orders=["order-1", "order-2"] if command.engaged else [],
                closed_positions=["AAPL"] if command.engaged and command.close_positions else [],
            )

        @app.get("/state")
        async def state() -> dict:
            return {"trading_state": str(self.trading_state), "kill_switch": {"engaged": self.engaged}}

        @app.get("/healthz")
        async def healthz() -> dict:
            return {"status": "ok"}

        return app

    def start(self) -> StandInEngine:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"standin-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"stand-in engine did not start on {self.url}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None
