"""How the engine calls a strategy: inline (backtest, tests) or in a process of its own (live engine).

User code must not be able to slow the stop. In a live engine the strategy runs in a child process
(multiprocessing "spawn", lowered CPU priority): a strategy that computes for seconds, blocks, leaks or
crashes holds only its own process; the engine's event loop (kill switch, API, acknowledgements) never
waits on it. One bar is in the child at a time, with the context (position, cash, limits) read when it is
sent; bars that arrive while it is busy wait in a bounded queue (oldest dropped, and counted).

A strategy that raises on `max_consecutive_errors` bars in a row, or whose process dies, is stopped and
reported (status FAILED in /state, an error log, `engine_errors_total{kind="strategy"}`), not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any, Protocol

from quantzoo_api.types import StrategySpec

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.sdk import OrderIntent, Strategy, StrategyContext, registry

log = logging.getLogger(__name__)

ContextFor = Callable[[Bar], StrategyContext]
IntentSink = Callable[[Sequence[OrderIntent]], Awaitable[None]]
ErrorSink = Callable[[str], None]

MAX_CONSECUTIVE_ERRORS = 5


class RunnerStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(slots=True)
class StrategyHealth:
    name: str
    status: RunnerStatus = RunnerStatus.STARTING
    isolated: bool = False
    bars: int = 0
    errors_total: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    bars_dropped: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "isolated": self.isolated,
            "bars": self.bars,
            "errors_total": self.errors_total,
            "last_error": self.last_error,
            "bars_dropped": self.bars_dropped,
        }


class StrategyRunner(Protocol):
    health: StrategyHealth

    def bind(self, context_for: ContextFor, sink: IntentSink, on_error: ErrorSink) -> None: ...

    def start(self) -> None: ...

    async def on_bar(self, bar: Bar) -> None:
        """Hand a bar to the strategy; its intents reach the sink (now, or when the child answers)."""
        ...

    async def stop(self) -> None: ...


class _ErrorPolicy:
    """Counts errors; after `limit` in a row the strategy is FAILED (stopped, not retried)."""

    def __init__(self, health: StrategyHealth, limit: int) -> None:
        self.health, self.limit = health, limit
        self.on_error: ErrorSink = lambda _: None

    def ok(self) -> None:
        self.health.bars += 1
        self.health.consecutive_errors = 0

    def error(self, text: str) -> bool:
        """Record one error; True when the strategy must stop."""
        h = self.health
        h.bars += 1
        h.errors_total += 1
        h.consecutive_errors += 1
        h.last_error = text[:500]
        self.on_error(text)
        if h.consecutive_errors >= self.limit:
            self.fail(f"raised on {h.consecutive_errors} bars in a row; last: {h.last_error}")
            return True
        log.warning("strategy raised", extra={"strategy": h.name, "error": h.last_error})
        return False

    def fail(self, why: str) -> None:
        self.health.status = RunnerStatus.FAILED
        self.health.last_error = why[:500]
        log.error(
            "strategy stopped: it sends no more orders", extra={"strategy": self.health.name, "why": why}
        )


class InlineRunner:
    """Calls the strategy on the caller's thread: deterministic, for the backtester and unit tests."""

    def __init__(
        self, strategy: Strategy[Any], name: str, max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS
    ):
        self.strategy = strategy
        self.health = StrategyHealth(name=name, status=RunnerStatus.RUNNING)
        self._policy = _ErrorPolicy(self.health, max_consecutive_errors)
        self._context_for: ContextFor | None = None
        self._sink: IntentSink | None = None

    def bind(self, context_for: ContextFor, sink: IntentSink, on_error: ErrorSink) -> None:
        self._context_for, self._sink = context_for, sink
        self._policy.on_error = on_error

    def start(self) -> None:
        return None

    async def on_bar(self, bar: Bar) -> None:
        if self.health.status is not RunnerStatus.RUNNING or self._context_for is None:
            return
        try:
            intents = self.strategy.on_bar(bar, self._context_for(bar))
        except Exception as exc:
            self._policy.error(f"{type(exc).__name__}: {exc}")
            return
        self._policy.ok()
        if intents and self._sink is not None:
            await self._sink(intents)

    async def stop(self) -> None:
        self.health.status = RunnerStatus.STOPPED


def _child_main(conn: Connection, name: str, params: dict[str, Any]) -> None:
    """The strategy's process: build it, then answer one bar at a time until told to stop."""
    with contextlib.suppress(OSError):
        os.nice(10)  # the engine process keeps the CPU when both want it
    try:
        strategy = registry.build(StrategySpec(name=name, params=params))
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        bar, ctx = message
        try:
            conn.send(("ok", list(strategy.on_bar(bar, ctx))))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ProcessRunner:
    """Runs the strategy in a child process; the engine's loop only ever waits on a readable pipe."""

    def __init__(
        self,
        spec: StrategySpec,
        *,
        max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS,
        queue_limit: int = 1_000,
    ) -> None:
        self.spec = spec
        self.health = StrategyHealth(name=spec.name, isolated=True)
        self._policy = _ErrorPolicy(self.health, max_consecutive_errors)
        self._queue: deque[Bar] = deque()
        self._queue_limit = queue_limit
        self._wake = asyncio.Event()
        self._context_for: ContextFor | None = None
        self._sink: IntentSink | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def bind(self, context_for: ContextFor, sink: IntentSink, on_error: ErrorSink) -> None:
        self._context_for, self._sink = context_for, sink
        self._policy.on_error = on_error

    def start(self) -> None:
        if self._task is not None:
            return
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads and a loop
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_main,
            args=(child, self.spec.name, dict(self.spec.params)),
            name=f"strategy-{self.spec.name}",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="strategy")

    async def on_bar(self, bar: Bar) -> None:
        if self.health.status in (RunnerStatus.FAILED, RunnerStatus.STOPPED):
            return
        if len(self._queue) >= self._queue_limit:
            self._queue.popleft()
            self.health.bars_dropped += 1
        self._queue.append(bar)
        self._wake.set()

    async def _recv(self) -> Any:
        conn = self._conn
        assert conn is not None
        if not conn.poll():
            loop = asyncio.get_running_loop()
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(conn.fileno(), lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(conn.fileno())
        return conn.recv()  # whole small messages: readable means the pickle is there

    async def _pump(self) -> None:
        try:
            kind, detail = await self._recv()
            if kind != "ready":
                self._policy.fail(f"could not start: {detail}")
                return
            self.health.status = RunnerStatus.RUNNING
            while self.health.status is RunnerStatus.RUNNING:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                bar = self._queue.popleft()
                assert self._conn is not None
                assert self._context_for is not None
                self._conn.send((bar, self._context_for(bar)))
                kind, detail = await self._recv()
                if kind == "ok":
                    self._policy.ok()
                    if detail and self._sink is not None:
                        await self._sink(detail)
                elif self._policy.error(str(detail)):
                    return
        except (EOFError, OSError, BrokenPipeError):
            code = self._proc.exitcode if self._proc is not None else None
            self._policy.fail(f"strategy process exited (exit code {code})")
        finally:
            if self.health.status is RunnerStatus.FAILED:
                self._terminate()

    def _terminate(self) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()  # nothing to save: a strategy's state is rebuilt from bars
        if proc is not None:
            proc.join(0)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def stop(self) -> None:
        if self.health.status is not RunnerStatus.FAILED:
            self.health.status = RunnerStatus.STOPPED
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()
            await asyncio.to_thread(proc.join, 2.0)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def inline_runner(spec: StrategySpec) -> InlineRunner:
    """The strategy `spec` names, called inline (raises sdk.registry.StrategyConfigError)."""
    return InlineRunner(registry.build(spec), spec.name)
