"""The engine's life: start (read the kill switch, reconcile, trade), run, and stop on SIGTERM.

Startup order matters for the kill switch: the engine is HALTED from construction; the kill-switch state
is read (config file, or the Kubernetes API when watching) and the broker reconciled before any order
can pass. On SIGTERM, new orders stop at once (in the signal handler, in memory), working orders are
cancelled while uvicorn drains connections, then the state is written to ENGINE_STATE_DIR, all inside
`shutdown_deadline_seconds`.

When it watches Kubernetes the engine also trades behind two fences (proof.py, lease.py): fresh proof of
the kill switch's state, and the trading Lease; a timer re-checks both so the state (and /state) says so
within a fraction of a second, and `submit` checks them itself at the moment of sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantzoo_engine.engine import ShutdownReport, TradingEngine
from quantzoo_engine.feed.base import MarketDataFeed
from quantzoo_engine.killswitch import KillSwitchStatus, command_from_spec, commands_from_persisted
from quantzoo_engine.kube_watch import KubeWatch, WatchAction, deletion_observed
from quantzoo_engine.lease import LeaseKeeper
from quantzoo_engine.level_watch import LevelWatch
from quantzoo_engine.persistence import KILL_SWITCH_FILE_NAME, read_json, write_json, write_state
from quantzoo_engine.proof import Freshness, ProofOfState

log = logging.getLogger(__name__)

WatchFactory = Callable[[Callable[[WatchAction], Any]], KubeWatch]
# (the watch, whose API client it shares; the Lease's validity; call on every change) -> keeper
LeaseFactory = Callable[[KubeWatch, Freshness, Callable[[], None]], LeaseKeeper]
# (the own watch, whose API client they share; the engine's watch-action handler) -> the other levels' watches
LevelWatchFactory = Callable[[KubeWatch, Callable[[Any], Any]], list[LevelWatch]]
FENCE_CHECK_SECONDS = 0.2
# The longest SIGTERM waits for its read of the TradingSystem (the cancel does not wait for it).
DELETION_READ_SECONDS = 2.0


class EngineRuntime:
    def __init__(
        self,
        engine: TradingEngine,
        feed: MarketDataFeed | None,
        *,
        state_dir: Path,
        shutdown_deadline_seconds: float,
        config_generation: int | None = None,
        watch_factory: WatchFactory | None = None,
        housekeeping_interval_seconds: float = 1.0,
        proof_timeout_seconds: float = 15.0,
        lease_factory: LeaseFactory | None = None,
        level_watch_factory: LevelWatchFactory | None = None,
    ) -> None:
        self.engine = engine
        self.feed = feed
        self.state_dir = state_dir
        self.shutdown_deadline_seconds = shutdown_deadline_seconds
        self.config_generation = config_generation
        self.watch_factory = watch_factory
        self.housekeeping_interval_seconds = housekeeping_interval_seconds
        self.watch: KubeWatch | None = None
        self.proof_timeout_seconds = proof_timeout_seconds
        self.lease_factory = lease_factory
        self.lease: LeaseKeeper | None = None
        self.level_watch_factory = level_watch_factory
        self.level_watches: list[LevelWatch] = []
        self.exit_code = 0
        self.state_file: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._shutdown_task: asyncio.Task[ShutdownReport] | None = None
        self._terminate_requested_at: float | None = None
        if feed is not None:
            engine.on_symbols_changed = feed.set_symbols

    # --- start -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        engine = self.engine
        # Still held by the engagement of the previous run (say, a direct halt during an API-server
        # outage): only a release naming it lifts it, whatever the first read says.
        # Every level's latch (issue #13): each holder's engagement is restored to its own latch.
        for held in commands_from_persisted(read_json(self.state_dir, KILL_SWITCH_FILE_NAME)):
            engine.apply_kill_switch_now(held)
        engine.on_latch_changed = self._persist_latch
        if self.watch_factory is None:
            # Standalone: the config file is the kill switch's source of truth at start.
            command = command_from_spec(
                engine.spec.kill_switch, generation=self.config_generation, default_source="config"
            )
            engine.apply_kill_switch_now(command)
            engine.kill_switch_read()
            if command.engaged:
                engine.defer_kill_switch_enforcement(command.close_positions)
        else:
            engine.proof = ProofOfState.with_bound(self.proof_timeout_seconds)
            self.watch = self.watch_factory(engine.on_watch_action)
            self._spawn(self.watch.run(), "kube-watch")
            if self.level_watch_factory is not None:
                # Every other level covering the engine: unproven (so HALTED) until each has been read.
                self.level_watches = self.level_watch_factory(self.watch, engine.on_watch_action)
                for level_watch in self.level_watches:
                    engine.proof.watch(level_watch.name)
                    self._spawn(level_watch.run(), f"watch-{level_watch.name}")
            if self.lease_factory is not None:
                engine.lease_validity = Freshness()
                self.lease = self.lease_factory(self.watch, engine.lease_validity, engine.check_fences)
                self._spawn(self.lease.run(), "trading-lease")
            engine.check_fences()
            self._spawn(self._fences(), "fences")
        self._spawn(engine.start(), "broker-reconcile")
        if self.feed is not None:
            self._spawn(self._run_feed(self.feed), "market-data")
        self._spawn(self._housekeeping(), "housekeeping")

    def _persist_latch(self, _: KillSwitchStatus) -> None:
        try:
            write_json(self.state_dir, KILL_SWITCH_FILE_NAME, self.engine.kill.persisted(), fsync=False)
        except OSError:
            log.exception("could not persist the kill-switch engagement", extra={"dir": str(self.state_dir)})

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def _run_feed(self, feed: MarketDataFeed) -> None:
        backoff = 0.5
        while True:
            try:
                async for bar in feed.stream():
                    backoff = 0.5
                    try:
                        await self.engine.on_bar(bar)
                    except Exception:
                        self.engine.count_error("internal")
                        log.exception("processing a bar failed", extra={"symbol": bar.symbol})
                log.warning("market data feed ended; data will go stale and halt new orders")
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                # A broken feed is stale data: the risk checks halt new orders, we keep trying.
                self.engine.count_error("feed")
                log.exception("market data feed failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.engine.housekeeping()
            except Exception:
                self.engine.count_error("internal")
                log.exception("housekeeping failed")
            await asyncio.sleep(self.housekeeping_interval_seconds)

    async def _fences(self) -> None:
        while True:
            self.engine.check_fences()
            await asyncio.sleep(FENCE_CHECK_SECONDS)

    # --- stop --------------------------------------------------------------------------------------------
    def request_terminate(self) -> None:
        """From the SIGTERM handler: block new orders now, start cancelling working orders at once.

        Runs inside a signal handler, so it only flips in-memory state and hands the rest to the loop.
        """
        self.engine.block_for_shutdown()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._ensure_shutdown_started)

    def _ensure_shutdown_started(self) -> asyncio.Task[ShutdownReport]:
        if self._shutdown_task is None:
            loop = asyncio.get_running_loop()
            self._terminate_requested_at = loop.time()
            # Leave a second of the budget for persisting and closing.
            budget = max(self.shutdown_deadline_seconds - 1.0, 0.1)
            self._shutdown_task = loop.create_task(self._shutdown(budget), name="shutdown")
        return self._shutdown_task

    async def _shutdown(self, budget: float) -> ShutdownReport:
        """Cancel at once and, when watching, read the TradingSystem beside it: a foreground deletion has the
        garbage collector delete this pod while the deletion's event may still be on its way, and SIGTERM can
        win that race. The read makes the deletion's halt (the flatten included, when asked) certain whenever
        the API server answers within the grace period."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        read = None
        if self.watch is not None:
            read = loop.create_task(self._carry_out_a_deletion(min(DELETION_READ_SECONDS, budget / 4)))
        report = await self.engine.shutdown(budget)
        if read is not None:
            try:
                await asyncio.wait_for(read, max(deadline - loop.time(), 0.1))
            except TimeoutError:
                report.errors.append("the deletion's halt was not carried out before the deadline")
        return report

    async def _carry_out_a_deletion(self, timeout_seconds: float) -> None:
        assert self.watch is not None
        obj = await asyncio.to_thread(self.watch.read_now, timeout_seconds)
        action = deletion_observed(obj)
        if action is not None:
            log.info(
                "the TradingSystem is being deleted: its halt is carried out before the engine stops",
                extra={"close_positions": action.kill_switch.close_positions},
            )
            await self.engine.on_watch_action(action)

    async def stop(self) -> None:
        """Lifespan shutdown: finish the cancel, stop the tasks, close the clients, persist."""
        loop = asyncio.get_running_loop()
        task = self._ensure_shutdown_started()
        started = self._terminate_requested_at or loop.time()
        remaining = self.shutdown_deadline_seconds - (loop.time() - started) - 0.5
        try:
            report = await asyncio.wait_for(asyncio.shield(task), max(remaining, 0.1))
        except TimeoutError:
            report = ShutdownReport(started_at=datetime.now(UTC), errors=["shutdown deadline reached"])
        if self.watch is not None:
            self.watch.stop()
        for level_watch in self.level_watches:
            level_watch.stop()
        for t in self._tasks:
            t.cancel()
        if self.lease is not None:
            await self.lease.release()  # after the cancel: a successor starts from a quiet account
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 1.0)
        await self.engine.strategy_runner.stop()
        for closer in (self.feed.close if self.feed else None, self.engine.broker.close):
            if closer is None:
                continue
            try:
                await asyncio.wait_for(closer(), 2.0)
            except Exception:
                log.warning("closing a client failed during shutdown", exc_info=True)
        self.state_file = self.persist(report)
        self.exit_code = 0 if report.clean and self.state_file is not None else 1
        log.info(
            "engine stopped",
            extra={
                "cancelled_orders": len(report.cancelled_orders),
                "errors": report.errors,
                "state_file": str(self.state_file),
            },
        )

    def persist(self, report: ShutdownReport) -> Path | None:
        engine = self.engine
        state = {
            "written_at": datetime.now(UTC),
            "reason": "shutdown",
            "pod": engine.pod,
            "namespace": engine.namespace,
            "name": engine.name,
            "shutdown": {
                "started_at": report.started_at,
                "finished_at": report.finished_at,
                "cancelled_orders": report.cancelled_orders,
                "errors": report.errors,
                "clean": report.clean,
            },
            "state": engine.state_view(),
            "positions": engine.positions_view(),
            "working_orders": [o.to_dict() for o in engine.orders.working()],
            "orders": [o.to_dict() for o in engine.orders.recent(500)],
        }
        try:
            return write_state(self.state_dir, state)
        except OSError:
            log.exception("could not persist the engine state", extra={"state_dir": str(self.state_dir)})
            return None
