"""The trading engine: bars in, risk-checked orders out, and the kill switch in between.

One object owns the book (portfolio, orders), the state machine, the kill-switch latch, the risk
engine, the data guard, the strategy runner and the broker. Everything runs on one asyncio loop, except
the strategy's own code: a live engine runs it in a process of its own (strategy/runner.py), so it cannot
hold the loop. The rules that make the kill switch hold are:

1. Blocking is in memory and synchronous: `apply_kill_switch_now` changes the state before it returns,
   with no await, so nothing can be sent in between.
2. `submit` has no await between the risk checks and the broker call, so an order either passed the
   checks before the engage (and is "in flight") or is refused.
3. The kill path cancels every working order at once, then lets in-flight submissions land and cancels
   again, then flattens if asked, each step bounded by the kill deadline. Only then is the command
   acknowledged, so after an acknowledged engage no position-increasing order reaches the broker.
4. A clean-up the broker did not finish inside the deadline (429, 5xx, no answer) is owed: housekeeping
   retries it every second while the switch stays engaged, and the ack lists what is still working.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from quantzoo_api.accounts import owned_client_order_id, owns
from quantzoo_api.killswitch import KillSwitchAck, KillSwitchCommand, TradingState
from quantzoo_api.sessions import UnknownCalendar, sessions_for
from quantzoo_api.types import KillSwitchMode, TradingSystemSpec

from quantzoo_engine.broker.base import (
    Broker,
    BrokerError,
    BrokerRejected,
    BrokerThrottled,
    CancelReport,
    FlattenReport,
    note_failure,
    note_retry_after,
)
from quantzoo_engine.clock import Clock, SystemClock
from quantzoo_engine.feed.base import Bar
from quantzoo_engine.feed.quality import BarVerdict, DataQualityGuard
from quantzoo_engine.killswitch import KillSwitchLevels, KillSwitchStatus, LatchDecision, ReleaseRefused
from quantzoo_engine.kube_watch import Proof, ResourceDeleted, SpecObserved, ViewLost, WatchAction
from quantzoo_engine.level_watch import LevelObserved
from quantzoo_engine.metrics import EngineMetrics
from quantzoo_engine.orders import Order, OrderBook, OrderRequest
from quantzoo_engine.portfolio import Portfolio
from quantzoo_engine.proof import Freshness, ProofOfState
from quantzoo_engine.risk.account_limits import AccountGuard
from quantzoo_engine.risk.checks import PreTradeContext, Rejection, RejectReason, RiskEngine
from quantzoo_engine.sdk import OrderIntent, Strategy, StrategyContext
from quantzoo_engine.sdk.registry import StrategyConfigError
from quantzoo_engine.state import HaltReason, TradingStateMachine, Transition
from quantzoo_engine.strategy.runner import (
    InlineRunner,
    ProcessRunner,
    RunnerStatus,
    StrategyRunner,
    inline_runner,
)

log = logging.getLogger(__name__)

R = TypeVar("R", CancelReport, FlattenReport)
# A new engagement, or a stronger ask while engaged (ReduceOnly -> Halt, closePositions): carry it out.
_ENFORCE = frozenset({LatchDecision.ENGAGED, LatchDecision.ESCALATED})


def _extend_unique(into: list[str], items: list[str]) -> None:
    into.extend(i for i in items if i not in into)


def _held(s: KillSwitchStatus) -> tuple[object, ...]:
    return (s.engaged, s.mode, s.close_positions, s.engagement, s.held_by)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    order: Order | None = None
    rejection: Rejection | None = None

    @property
    def accepted(self) -> bool:
        return self.order is not None


@dataclass(slots=True)
class ShutdownReport:
    started_at: datetime
    finished_at: datetime | None = None
    cancelled_orders: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class OrderCounts:
    submitted: int = 0
    filled: int = 0
    rejected: int = 0
    cancelled: int = 0
    cancelled_no_proof_of_state: int = 0  # of `cancelled`: by the no_proof_of_state halt
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


class TradingEngine:
    def __init__(
        self,
        *,
        spec: TradingSystemSpec,
        broker: Broker,
        metrics: EngineMetrics | None = None,
        clock: Clock | None = None,
        strategy: Strategy[Any] | None = None,
        isolate_strategy: bool = False,
        pod: str = "engine",
        namespace: str = "default",
        name: str = "standalone",
        kill_deadline_seconds: float = 1.5,
        outlier_pct: float = 10.0,
        bar_interval_seconds: float | None = None,
        reconcile_interval_seconds: float = 5.0,
        order_prefix: str | None = None,
        account_guard: AccountGuard | None = None,
    ) -> None:
        self.spec = spec
        # In a shared TradingAccount: every client order id carries this prefix (quantzoo_api.accounts),
        # and the account-wide limits are checked with every order.
        self.order_prefix = order_prefix
        self.account_guard = account_guard
        self.broker = broker
        self.metrics = metrics or EngineMetrics()
        self.clock = clock or SystemClock()
        # Live engines run the strategy in a process of its own (strategy/runner.py); a backtest or a
        # unit test calls it inline. Either way its intents pass `submit`, like a manual order.
        self.isolate_strategy = isolate_strategy
        self.strategy_runner: StrategyRunner = (
            InlineRunner(strategy, spec.strategy.name) if strategy is not None else self._new_runner(spec)
        )
        self.pod, self.namespace, self.name = pod, namespace, name
        self.kill_deadline_seconds = kill_deadline_seconds
        self.reconcile_interval_seconds = reconcile_interval_seconds

        self.trading = TradingStateMachine()
        # One latch per level holding it (its TradingSystem, its account, the halts covering it).
        self.kill = KillSwitchLevels(namespace, name)
        self.risk = RiskEngine(spec.risk)
        self.portfolio = Portfolio(cash=spec.broker.initial_cash)
        self.orders = OrderBook()
        # The market's sessions (spec.session.calendar; raises UnknownCalendar): outside one, no order
        # is sent, the strategy is not asked and data is not stale.
        self.sessions = sessions_for(spec.calendar)
        self.data = DataQualityGuard(
            list(spec.symbols),
            bar_interval_seconds or spec.bar_interval_seconds,
            outlier_pct,
            started_mono=self.clock.monotonic(),
        )
        self._symbols = frozenset(spec.symbols)
        self.counts = OrderCounts()
        self.errors_total = 0
        self.started_at = self.clock.now()
        self.heartbeat_at = self.started_at
        self.shutdown_report: ShutdownReport | None = None
        # Set by the app so a live symbol change reaches the feed.
        self.on_symbols_changed: Callable[[list[str]], Awaitable[None]] | None = None
        # What the engagement in force has cancelled and closed, by whichever path (push, watch, retry):
        # every ack of it reports these, so status and the audit show what the engagement did.
        self._engagement_cancelled: list[str] = []
        self._engagement_closed: list[str] = []
        # Set by the runtime: keeps the engagement on disk, so a restart is still held by it.
        self.on_latch_changed: Callable[[KillSwitchStatus], None] | None = None

        self._inflight = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._kill_lock: asyncio.Lock | None = None
        # A kill that arrived before the broker was reconciled: its broker work runs right after.
        self._pending_enforcement: bool | None = None
        # A kill-path clean-up the broker did not finish (value: flatten too); housekeeping retries it.
        self._cleanup_owed: bool | None = None
        self._cleanup_retry_at = 0.0  # monotonic; backs off 1 s doubling to 30 s while it keeps failing
        self._cleanup_backoff = 1.0
        self._last_reconcile_mono = self.clock.monotonic()
        self._shutdown_transition: Transition | None = None
        # Set by the runtime when the engine watches Kubernetes (proof.py, lease.py): fences it trades behind.
        self.proof: ProofOfState | None = None
        self.lease_validity: Freshness | None = None
        self._unproven_cancel: asyncio.Task[None] | None = None
        self._unproven_retry_at = 0.0  # monotonic; a failed cancel under no_proof_of_state waits this long
        if hasattr(broker, "may_send"):  # a broker that sends from worker threads checks this there
            broker.may_send = lambda: self.trading.state is not TradingState.HALTED
        self._strategy_stopping: asyncio.Task[None] | None = None
        self._sync_state(None)
        self.strategy_runner.bind(self.strategy_context, self.submit_intents, self._strategy_error)

    # --- state -----------------------------------------------------------------------------------------
    @property
    def trading_state(self) -> TradingState:
        return self.trading.state

    @property
    def ready(self) -> bool:
        facts = self.trading.facts
        return facts.reconciled and facts.kill_switch_known and not facts.shutting_down

    def _sync_state(self, transition: Transition | None) -> None:
        if transition is not None:
            log.info(
                "trading state %s -> %s",
                transition.before,
                transition.after,
                extra={
                    "cause": transition.cause,
                    "halt_reasons": [str(r) for r in self.trading.halt_reasons],
                },
            )
        self.metrics.set_trading_state(self.trading.state)
        self.metrics.kill_switch_engaged.set(1 if self.kill.status.engaged else 0)
        self.metrics.kill_switch_state_known.set(1 if self.trading.facts.kill_switch_known else 0)

    def count_error(self, kind: str) -> None:
        self.errors_total += 1
        self.metrics.errors.labels(kind=kind).inc()

    def kill_switch_read(self) -> None:
        """The kill-switch state is known (config file read, or a watch snapshot applied)."""
        self._sync_state(self.trading.kill_switch_read())

    def check_fences(self) -> None:
        """Halt (or resume) on the proof of the kill switch's state and on the trading Lease. No await."""
        now = self.clock.monotonic()
        proven = self.proof is None or self.proof.fresh(now)
        leased = self.lease_validity is None or self.lease_validity.valid(now)
        was_proven = self.trading.facts.state_proven
        self._sync_state(self.trading.fences(proven=proven, leased=leased))
        if was_proven and not proven:
            self._start_unproven_cancel()

    def _start_unproven_cancel(self) -> None:
        """no_proof_of_state: the switch may have been engaged where this engine cannot see it, and an order
        resting at the broker could fill under it. Cancel the working orders at once (in a task: this runs
        without await); positions stay -- flattening is the switch's decision, not a guess."""
        if self._unproven_cancel is not None and not self._unproven_cancel.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): housekeeping does it within a second
            return
        self._unproven_cancel = loop.create_task(self.cancel_unproven_orders())

    async def cancel_unproven_orders(self) -> None:
        """While halted for no_proof_of_state: cancel every working order (again, after a failure, from
        housekeeping); a kill-switch clean-up in progress cancels them anyway."""
        facts = self.trading.facts
        if facts.state_proven or not facts.reconciled or self.kill_lock.locked():
            return
        if (
            not (self.orders.working_count or self._inflight)
            or self.clock.monotonic() < self._unproven_retry_at
        ):
            return
        async with self.kill_lock:
            deadline_at = asyncio.get_running_loop().time() + self.kill_deadline_seconds
            report = await self._cancel_everything(deadline_at, str(HaltReason.NO_PROOF_OF_STATE))
        self.counts.cancelled_no_proof_of_state += len(report.cancelled)
        for _ in report.errors:
            self.count_error("kill_path")
        self._unproven_retry_at = self.clock.monotonic() + (1.0 if report.errors else 0.0)
        log.warning(
            "no proof of the kill switch's state: working orders cancelled, positions kept",
            extra={"cancelled": report.cancelled, "errors": report.errors},
        )

    def defer_kill_switch_enforcement(self, close_positions: bool) -> None:
        """Cancel (and optionally flatten) once the broker is reconciled; for a switch engaged at start."""
        self._pending_enforcement = bool(self._pending_enforcement) or close_positions

    def heartbeat(self, now: datetime | None = None) -> None:
        self.heartbeat_at = now or self.clock.now()
        self.metrics.heartbeat_timestamp_seconds.set(self.heartbeat_at.timestamp())

    # --- broker reconcile --------------------------------------------------------------------------------
    async def reconcile_with_broker(self, *, first: bool = False) -> None:
        """Adopt the broker's positions, cash and open orders (the broker is the source of truth)."""
        started = time.perf_counter()
        account = await self.broker.account()
        positions = await self.broker.positions()
        open_orders = await self.broker.open_orders()
        self.metrics.observe_latency("broker", time.perf_counter() - started)
        start_equity = (account.last_equity or account.equity) if first else account.last_equity
        self.portfolio.reconcile(account.cash, positions, start_of_day_equity=start_equity)
        self.orders.replace_working(open_orders, self.clock.now())
        for order in open_orders:
            self.risk.remember_client_order_id(order.client_order_id)
        self._last_reconcile_mono = self.clock.monotonic()

    async def start(self, retry_max_seconds: float = 10.0) -> None:
        """Connect and reconcile before trading; retry until it works (HALTED meanwhile)."""
        self.strategy_runner.start()
        backoff = 0.5
        while not self.trading.facts.shutting_down:
            try:
                await self.broker.connect()
                await self.reconcile_with_broker(first=True)
                break
            except BrokerError as exc:
                self.count_error("broker")
                log.warning("broker reconcile failed; still HALTED, retrying", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, retry_max_seconds)
        else:
            return
        self.portfolio.roll_day(self.clock.now().date())
        log.info(
            "reconciled with the broker",
            extra={
                "broker": self.broker.name,
                "positions": len(self.portfolio.positions),
                "working_orders": len(self.orders.working()),
                "cash": self.portfolio.cash,
            },
        )
        self._sync_state(self.trading.broker_reconciled())
        if self._pending_enforcement is not None or self.kill.status.engaged:
            close = bool(self._pending_enforcement)
            self._pending_enforcement = None
            await self._enforce_kill_switch(close_positions=close, cause="kill_switch")

    # --- market data -------------------------------------------------------------------------------------
    async def on_bar(self, bar: Bar) -> None:
        now_mono, now_wall = self.clock.monotonic(), self.clock.now()
        self.heartbeat(now_wall)
        seen = self.data.observe(bar, now_mono, now_wall)
        if seen.missing_bars:
            self.metrics.missing_bars.labels(symbol=bar.symbol).inc(seen.missing_bars)
        if seen.verdict is BarVerdict.OUTLIER:
            self.metrics.outlier_prices.labels(symbol=bar.symbol).inc()
            log.warning("outlier price refused", extra={"symbol": bar.symbol, "close": bar.close})
        if seen.verdict is not BarVerdict.ACCEPTED:
            return
        self.portfolio.mark(bar.symbol, bar.close)
        self.broker.on_price(bar.symbol, bar.close, bar.timestamp)
        self._apply_fills()
        if self.trades_now():
            await self.strategy_runner.on_bar(bar)

    # --- the market's sessions -----------------------------------------------------------------------------
    def market_open(self) -> bool:
        return self.sessions.is_open(self.clock.now())

    def trades_now(self) -> bool:
        """Whether orders may be sent now as far as the calendar goes (the risk checks decide the rest)."""
        return self.spec.session.allow_outside_session or self.market_open()

    def staleness(self, symbol: str, now_mono: float) -> float:
        """Seconds the symbol's data is overdue, counting only time the market was open: zero while it is
        closed, and at most the time since this session opened (no bar is due before the open)."""
        raw = self.data.staleness(symbol, now_mono)
        if self.spec.session.allow_outside_session:
            return raw  # it trades around the clock, so data is due around the clock
        now = self.clock.now()
        if not self.sessions.is_open(now):
            return 0.0
        opened = self.sessions.session_open(now)
        return raw if opened is None else min(raw, (now - opened).total_seconds())

    # --- the strategy ------------------------------------------------------------------------------------
    def strategy_context(self, bar: Bar) -> StrategyContext:
        """What the strategy may read with a bar: a snapshot, taken when the bar is handed to it."""
        p = self.portfolio
        return StrategyContext(
            now=self.clock.now(),
            position=p.quantity(bar.symbol),
            working=self.orders.working_net(bar.symbol),
            cash=p.cash,
            equity=p.equity,
            limits=self.risk.limits,
        )

    async def submit_intents(self, intents: Sequence[OrderIntent]) -> None:
        # While HALTED the strategy keeps its indicators current but its orders are not sent: they would
        # all be refused, and a stream of refusals would only look like a reject spike.
        if self.trading.state is TradingState.HALTED:
            return
        for intent in intents:
            await self.submit(intent.to_request())

    def _strategy_error(self, _: str) -> None:
        self.count_error("strategy")

    def _new_runner(self, spec: TradingSystemSpec) -> StrategyRunner:
        """Raises StrategyConfigError (naming the field) for an unknown strategy or a bad parameter."""
        if self.isolate_strategy:
            from quantzoo_engine.sdk.registry import validate_params

            validate_params(spec.strategy.name, dict(spec.strategy.params))
            return ProcessRunner(spec.strategy)
        return inline_runner(spec.strategy)

    def _replace_strategy(self, spec: TradingSystemSpec) -> None:
        """A live change of spec.strategy: the new one starts afresh; a bad one trades nothing."""
        old = self.strategy_runner
        try:
            runner = self._new_runner(spec)
        except StrategyConfigError as exc:
            log.error("strategy spec refused: the strategy sends no orders", extra={"error": str(exc)})
            runner = InlineRunner(_Refused(), spec.strategy.name)
            runner.health.status = RunnerStatus.FAILED
            runner.health.last_error = str(exc)
        runner.bind(self.strategy_context, self.submit_intents, self._strategy_error)
        self.strategy_runner = runner
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        runner.start()
        self._strategy_stopping = loop.create_task(old.stop(), name="strategy-stop")

    # --- orders ------------------------------------------------------------------------------------------
    def pretrade_context(self, request: OrderRequest) -> PreTradeContext:
        symbol = request.symbol
        now = self.clock.monotonic()
        staleness = self.staleness(symbol, now)
        limit = self.spec.stale_data_limit
        return PreTradeContext(
            trading_state=self.trading.state,
            symbol_known=symbol in self._symbols,
            last_price=self.data.last_price(symbol),
            data_stale=staleness > limit,
            staleness_seconds=staleness,
            stale_limit_seconds=limit,
            market_open=self.trades_now(),
            data_suspect=self.data.is_suspect(symbol),
            position=self.portfolio.quantity(symbol),
            working_same_side=self.orders.working_quantity(symbol, request.side),
            working_net=self.orders.working_net(symbol),
            gross_exposure=self.portfolio.gross_exposure,
            daily_drawdown_pct=self.portfolio.daily_drawdown_pct,
            account=self.account_guard.view() if self.account_guard is not None else None,
        )

    def _count_rejection(self, reason: RejectReason) -> None:
        self.counts.rejected += 1
        self.counts.rejected_by_reason[str(reason)] = self.counts.rejected_by_reason.get(str(reason), 0) + 1
        self.metrics.orders_rejected.labels(reason=str(reason)).inc()

    async def submit(self, request: OrderRequest) -> SubmitResult:
        if self.order_prefix is not None and not owns(self.order_prefix, request.client_order_id):
            request = replace(
                request, client_order_id=owned_client_order_id(self.order_prefix, request.client_order_id)
            )
        if self.account_guard is not None:
            # Before the checks (every await is): the kill switch is checked after it, in evaluate.
            await self.account_guard.refresh_if_stale()
        self.check_fences()  # exact at the moment of sending, not only as fresh as the last timer tick
        rejection = self.risk.evaluate(request, self.pretrade_context(request), self.clock.monotonic())
        if rejection is not None:
            self._count_rejection(rejection.reason)
            log.debug("order refused", extra={"reason": str(rejection.reason), "symbol": request.symbol})
            return SubmitResult(rejection=rejection)
        # Accepted: no await between the checks and the broker call (see the module docstring).
        if self.account_guard is not None:
            price = request.limit_price or self.data.last_price(request.symbol) or 0.0
            self.account_guard.note_sent(request.quantity * price)
        self.orders.add_pending(request)
        self._inflight += 1
        started = time.perf_counter()
        try:
            order = await self.broker.submit_order(request)
        except BrokerThrottled as exc:
            # Refused here, not by the broker; no broker error either (the watchdog's error rate): the
            # broker asked for a pause, and the order rate the strategy keeps is its own risk check's.
            self.orders.drop_pending(request.client_order_id)
            self._count_rejection(RejectReason.BROKER_RATE_LIMITED)
            return SubmitResult(rejection=Rejection(RejectReason.BROKER_RATE_LIMITED, str(exc)))
        except BrokerRejected as exc:
            self.orders.drop_pending(request.client_order_id)
            self._count_rejection(RejectReason.BROKER_REJECTED)
            return SubmitResult(rejection=Rejection(RejectReason.BROKER_REJECTED, str(exc)))
        except BrokerError as exc:
            self.orders.drop_pending(request.client_order_id)
            self.count_error("broker")
            self._count_rejection(RejectReason.BROKER_ERROR)
            return SubmitResult(rejection=Rejection(RejectReason.BROKER_ERROR, str(exc)))
        except Exception as exc:
            self.orders.drop_pending(request.client_order_id)
            self.count_error("internal")
            log.exception("order submission failed")
            self._count_rejection(RejectReason.BROKER_ERROR)
            return SubmitResult(rejection=Rejection(RejectReason.BROKER_ERROR, type(exc).__name__))
        finally:
            self._end_inflight()
            self.metrics.observe_latency("broker", time.perf_counter() - started)
        self.orders.add(order)
        self.counts.submitted += 1
        self.metrics.orders_submitted.labels(side=str(order.side)).inc()
        self._apply_fills()
        return SubmitResult(order=order)

    def _end_inflight(self) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    async def _wait_inflight(self, timeout: float) -> bool:
        if self._inflight == 0:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, max(timeout, 0.001))
        except TimeoutError:
            return False
        return True

    def _apply_fills(self) -> None:
        for fill in self.broker.drain_fills():
            self.portfolio.apply_fill(fill)
            self.orders.on_fill(fill)
            self.counts.filled += 1
            self.metrics.orders_filled.labels(side=str(fill.side)).inc()

    # --- kill switch -------------------------------------------------------------------------------------
    def apply_kill_switch_now(self, command: KillSwitchCommand) -> LatchDecision:
        """The in-memory half of a kill-switch command. In force when this returns; no await, no I/O."""
        started = time.perf_counter()
        before = self.kill.status
        decision = self.kill.apply(command, self.clock.now())
        status = self.kill.status
        if not status.engaged:
            self._cleanup_owed = None  # a later engagement owes only what it asks for itself
        self._sync_state(self.trading.kill_switch(status.engaged, status.mode))
        if command.engaged:
            self.metrics.kill_switch_engage_seconds.observe(time.perf_counter() - started)
        if decision in (LatchDecision.ENGAGED, LatchDecision.RELEASED):
            self._engagement_cancelled, self._engagement_closed = [], []
        if self.on_latch_changed is not None and _held(before) != _held(status):
            self.on_latch_changed(status)  # after the block: the disk never delays a halt
        log.info(
            "kill-switch command: %s",
            decision,
            extra={
                "engaged": command.engaged,
                "mode": str(command.mode),
                "source": command.source,
                "operator": command.operator,
                "reason": command.reason,
                "generation": command.generation,
                "trading_state": str(self.trading.state),
            },
        )
        return decision

    async def apply_kill_switch(
        self, command: KillSwitchCommand, *, enforce_repeats: bool = True
    ) -> KillSwitchAck:
        """Block, then cancel and flatten, then acknowledge. Idempotent. A release that does not name
        the engagement held raises ReleaseRefused (nothing changed)."""
        decision = self.apply_kill_switch_now(command)
        if decision is LatchDecision.RELEASE_REFUSED:
            raise ReleaseRefused(self.kill.held(self.kill.holder_for(command)), command.engagement)
        cancelled: list[str] = []
        closed: list[str] = []
        errors: list[str] = []
        if command.engaged and (decision in _ENFORCE or enforce_repeats):
            covered = self.kill.version
            cancelled, closed, errors = await self._enforce_kill_switch(
                close_positions=command.close_positions, cause="kill_switch"
            )
            # If the switch was released and engaged again while we cleaned up, orders accepted in
            # between may still be landing: an "engaged" ack must cover the engagement now in force.
            while self.kill.status.engaged and self.kill.version != covered:
                covered = self.kill.version
                more = await self._enforce_kill_switch(close_positions=False, cause="kill_switch")
                cancelled, errors = cancelled + more[0], errors + more[2]
        return self.acknowledge(cancelled, closed, errors, holder=self.kill.holder_for(command))

    def acknowledge(
        self, cancelled: list[str], closed: list[str], errors: list[str], *, holder: str | None = None
    ) -> KillSwitchAck:
        """`engaged`/`engagement`: the latch the command addressed (`holder`; the engine's own switch by
        default), so a release of one level reads as done while another level still holds the engine;
        `trading_state` is the engine's, whatever holds it."""
        status = self.kill.status
        addressed = self.kill.latch(holder or self.kill.own).status
        if status.engaged:  # the engagement's totals, not only this call's share of the work
            cancelled, closed = list(self._engagement_cancelled), list(self._engagement_closed)
        return KillSwitchAck(
            pod=self.pod,
            engaged=addressed.engaged,
            trading_state=self.trading.state,
            generation=status.generation,
            engagement=addressed.engagement if addressed.engaged else None,
            acknowledged_at=self.clock.now(),
            cancelled_orders=cancelled,
            closed_positions=closed,
            errors=errors,
            working_orders=[o.id for o in self.orders.working()] if status.engaged else [],
        )

    async def _bounded(
        self, call: Callable[[float], Awaitable[R]], empty: R, deadline_at: float, what: str
    ) -> R:
        """Run one broker step of the kill path inside what is left of the deadline."""
        remaining = deadline_at - asyncio.get_running_loop().time()
        if remaining <= 0:
            empty.errors.append(f"{what}: kill deadline reached before it could start")
            return empty
        started = time.perf_counter()
        try:
            # The broker bounds itself; this outer bound is for brokers that do not.
            return await asyncio.wait_for(call(remaining), remaining + 0.25)
        except TimeoutError:
            empty.errors.append(
                f"{what}: no answer within the kill deadline ({self.kill_deadline_seconds:g}s)"
            )
        except BrokerError as exc:
            note_failure(empty, f"{what}: {exc}", exc)
        except Exception as exc:
            log.exception("kill path step failed", extra={"step": what})
            empty.errors.append(f"{what}: {type(exc).__name__}")
        finally:
            self.metrics.observe_latency("broker", time.perf_counter() - started)
        return empty

    @property
    def kill_lock(self) -> asyncio.Lock:
        if self._kill_lock is None:
            self._kill_lock = asyncio.Lock()
        return self._kill_lock

    async def _cancel_everything(self, deadline_at: float, cause: str) -> CancelReport:
        """New orders are already blocked. Cancel at once (a slow submission must not hold up the cancel
        of what already rests at the broker), then let the submissions that passed the checks before the
        block land, then cancel again for what they placed."""
        report = CancelReport()
        await self._cancel_round(report, deadline_at, cause)
        if self._inflight:
            loop = asyncio.get_running_loop()
            if not await self._wait_inflight(deadline_at - loop.time()):
                report.errors.append(f"{self._inflight} order submissions still in flight at the deadline")
            await self._cancel_round(report, deadline_at, cause)
        return report

    async def _cancel_round(self, report: CancelReport, deadline_at: float, cause: str) -> None:
        result = await self._bounded(
            self.broker.cancel_all_orders, CancelReport(), deadline_at, "cancel all orders"
        )
        report.cancelled.extend(result.cancelled)
        report.errors.extend(result.errors)
        note_retry_after(report, result.retry_after)
        self.orders.mark_cancelled(result.cancelled, self.clock.now())
        self.counts.cancelled += len(result.cancelled)
        if result.cancelled:
            self.metrics.orders_cancelled.labels(cause=cause).inc(len(result.cancelled))

    async def _enforce_kill_switch(
        self, *, close_positions: bool, cause: str
    ) -> tuple[list[str], list[str], list[str]]:
        if not self.trading.facts.reconciled:
            self._pending_enforcement = bool(self._pending_enforcement) or close_positions
            return [], [], ["broker not reconciled yet: working orders are cancelled as soon as it is"]
        async with self.kill_lock:  # one clean-up at a time: two concurrent flattens would overshoot
            # Nothing is sent while cleaning up, even in ReduceOnly (state.py says why).
            self._sync_state(self.trading.kill_switch_cleanup(True))
            try:
                deadline_at = asyncio.get_running_loop().time() + self.kill_deadline_seconds
                cancel = await self._cancel_everything(deadline_at, cause)
                closed: list[str] = []
                errors = list(cancel.errors)
                retry_after = cancel.retry_after or 0.0
                if close_positions:
                    flat = await self._bounded(
                        self.broker.close_all_positions, FlattenReport(), deadline_at, "close all positions"
                    )
                    closed, errors = flat.closed, errors + flat.errors
                    retry_after = max(retry_after, flat.retry_after or 0.0)
                    self._apply_fills()
            finally:
                self._sync_state(self.trading.kill_switch_cleanup(False))
            for _ in errors:
                self.count_error("kill_path")
            if errors:
                self._cleanup_owed = bool(self._cleanup_owed) or close_positions
                # Not before the broker's Retry-After: a retry sooner is one it said it will refuse.
                self._cleanup_retry_at = self.clock.monotonic() + max(self._cleanup_backoff, retry_after)
                self._cleanup_backoff = min(self._cleanup_backoff * 2, 30.0)
                log.warning(
                    "kill-switch clean-up unfinished; retrying while engaged",
                    extra={"errors": errors, "working_orders": self.orders.working_count},
                )
            else:
                self._cleanup_owed = None
                self._cleanup_backoff = 1.0
            if self.kill.status.engaged:
                _extend_unique(self._engagement_cancelled, cancel.cancelled)
                _extend_unique(self._engagement_closed, closed)
            return cancel.cancelled, closed, errors

    # --- the TradingSystem, live -------------------------------------------------------------------------
    def apply_spec_now(self, spec: TradingSystemSpec) -> list[str]:
        """Apply in memory what can change without a restart: risk limits, symbols, strategy."""
        old, changed = self.spec, []
        if spec.risk != old.risk:
            self.risk.update_limits(spec.risk)
            changed.append("risk")
        if spec.symbols != old.symbols:
            self._symbols = frozenset(spec.symbols)
            self.data.set_symbols(list(spec.symbols))
            changed.append("symbols")
        if spec.strategy != old.strategy:
            self._replace_strategy(spec)
            changed.append("strategy")
        if spec.calendar != old.calendar:
            try:
                self.sessions = sessions_for(spec.calendar)
                changed.append("session")
            except UnknownCalendar as exc:
                log.error(
                    "calendar change refused; keeping %s", self.sessions.name, extra={"error": str(exc)}
                )
        # accountRef: the account's kill switch is watched from the start (level_watch.py), as its broker is.
        fields = ("mode", "broker", "market_data", "account_ref")
        needs_restart = [f for f in fields if getattr(spec, f) != getattr(old, f)]
        if needs_restart:
            log.warning("spec change needs an engine restart to apply", extra={"fields": needs_restart})
        self.spec = spec
        if changed:
            log.info("applied spec change live", extra={"changed": changed})
        return changed

    async def apply_spec(self, spec: TradingSystemSpec) -> list[str]:
        """apply_spec_now, then let the feed follow a symbol change (that may take a network call)."""
        changed = self.apply_spec_now(spec)
        if "symbols" in changed and self.on_symbols_changed is not None:
            await self.on_symbols_changed(list(spec.symbols))
        return changed

    def _proven(self, watch: str | None = None) -> None:
        if self.proof is not None:
            self.proof.prove(self.clock.monotonic(), watch)
        self.check_fences()

    async def on_level_observed(self, action: LevelObserved) -> None:
        """Another level's objects that cover the engine were read: each command to its holder's latch."""
        enforce: bool | None = None
        for command in action.commands:
            decision = self.apply_kill_switch_now(command)
            if command.engaged and decision in _ENFORCE:
                enforce = bool(enforce) or command.close_positions
        self._proven(action.watch)
        if enforce is not None:
            await self._enforce_kill_switch(close_positions=enforce, cause="kill_switch")

    async def on_watch_action(self, action: WatchAction | LevelObserved) -> None:
        if isinstance(action, LevelObserved):
            await self.on_level_observed(action)
        elif isinstance(action, ViewLost | Proof) and action.watch is not None:
            if isinstance(action, Proof):
                self._proven(action.watch)
            else:
                # Fail closed: without proof of this level the fences halt the engine (no_proof_of_state)
                # until the level is read again.
                log.warning(
                    "lost the view of a kill-switch level: HALTED until it is read again",
                    extra={"level": action.watch, "reason": action.reason},
                )
                if self.proof is not None:
                    self.proof.lose(action.watch)
                self.check_fences()
        elif isinstance(action, SpecObserved):
            # The kill switch first: nothing (not even a feed re-subscription) may delay a halt.
            decision = self.apply_kill_switch_now(action.kill_switch)
            changed = self.apply_spec_now(action.spec)
            self.kill_switch_read()
            self._proven()
            if "symbols" in changed and self.on_symbols_changed is not None:
                await self.on_symbols_changed(list(action.spec.symbols))
            if action.kill_switch.engaged and decision in _ENFORCE:
                await self._enforce_kill_switch(
                    close_positions=action.kill_switch.close_positions, cause="kill_switch"
                )
        elif isinstance(action, Proof):
            self._proven()
        elif isinstance(action, ViewLost):
            # Fail closed: whatever the state was, it is not known any more (design.md, point 4).
            log.warning(
                "lost the view of the kill switch: HALTED until it is read again",
                extra={"reason": action.reason},
            )
            self._sync_state(self.trading.kill_switch_view_lost())
        elif isinstance(action, ResourceDeleted):
            await self.apply_kill_switch(
                KillSwitchCommand(
                    engaged=True,
                    mode=KillSwitchMode.HALT,
                    reason="TradingSystem deleted",
                    source="kubernetes-watch",
                )
            )

    # --- housekeeping and shutdown -----------------------------------------------------------------------
    async def housekeeping(self) -> None:
        """Once a second: heartbeat, day roll, and the periodic reconcile with a remote broker."""
        now = self.clock.now()
        self.heartbeat(now)
        if self.portfolio.roll_day(now.date()):
            log.info("new trading day", extra={"start_of_day_equity": self.portfolio.start_of_day_equity})
        due = self.clock.monotonic() - self._last_reconcile_mono >= self.reconcile_interval_seconds
        if self.broker.needs_polling and self.trading.facts.reconciled and due:
            try:
                await self.reconcile_with_broker()
            except BrokerError as exc:
                self.count_error("broker")
                log.warning("periodic broker reconcile failed", extra={"error": str(exc)})
        await self.retry_owed_cleanup()
        await self.cancel_unproven_orders()

    async def retry_owed_cleanup(self) -> None:
        """While engaged: finish a clean-up the broker refused or timed out, and cancel any order found
        working under a Halt (e.g. by the periodic reconcile). Nothing new is submitted meanwhile."""
        status = self.kill.status
        if not status.engaged or not self.trading.facts.reconciled or self.kill_lock.locked():
            return
        if self._cleanup_owed is None and status.mode is KillSwitchMode.HALT and self.orders.working_count:
            self._cleanup_owed = False
        if self._cleanup_owed is None or self.clock.monotonic() < self._cleanup_retry_at:
            return
        log.info("retrying the kill-switch clean-up", extra={"working_orders": self.orders.working_count})
        await self._enforce_kill_switch(close_positions=self._cleanup_owed, cause="kill_switch")

    def block_for_shutdown(self) -> None:
        """Stop new orders now. Safe inside a signal handler: only the in-memory state changes; no
        logging and no metric locks, which the interrupted code might be holding."""
        self._shutdown_transition = self.trading.begin_shutdown() or self._shutdown_transition

    def begin_shutdown(self) -> None:
        """Stop new orders now, and say so (logs, metrics)."""
        transition = self.trading.begin_shutdown() or self._shutdown_transition
        self._shutdown_transition = None
        self._sync_state(transition)

    async def shutdown(self, deadline_seconds: float) -> ShutdownReport:
        """Stop new orders, cancel working orders. Persisting is the app's job (it knows the directory)."""
        self.begin_shutdown()
        report = ShutdownReport(started_at=self.clock.now())
        if self.trading.facts.reconciled:
            deadline_at = asyncio.get_running_loop().time() + deadline_seconds
            async with self.kill_lock:
                cancel = await self._cancel_everything(deadline_at, "shutdown")
            report.cancelled_orders, report.errors = cancel.cancelled, cancel.errors
        report.finished_at = self.clock.now()
        self.shutdown_report = report
        return report

    # --- views (the API and the state file read these) ------------------------------------------------------
    def kill_switch_view(self) -> dict[str, Any]:
        s = self.kill.status
        return {
            "engaged": s.engaged,
            "mode": str(s.mode),
            "reason": s.reason,
            "operator": s.operator,
            "source": s.source,
            "generation": s.generation,
            "since": s.since,
            # Every level holding the engine, the strongest first (issue #13), and its own switch alone.
            "held_by": [hold.model_dump(mode="json", by_alias=True) for hold in s.held_by],
            "system_engaged": self.kill.latch(self.kill.own).status.engaged,
        }

    def state_view(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        limit = self.spec.stale_data_limit
        staleness = {s: self.staleness(s, now) for s in self.data.symbols}
        p = self.portfolio
        return {
            "namespace": self.namespace,
            "name": self.name,
            "pod": self.pod,
            "trading_state": str(self.trading.state),
            "halt_reasons": [str(r) for r in self.trading.halt_reasons],
            "ready": self.ready,
            "kill_switch": self.kill_switch_view(),
            "kill_switch_state_known": self.trading.facts.kill_switch_known,
            "last_update": self.data.last_update(),
            "heartbeat_at": self.heartbeat_at,
            "started_at": self.started_at,
            "mode": str(self.spec.mode),
            "broker": self.broker.name,
            "strategy": self.spec.strategy.name,
            "strategy_health": self.strategy_runner.health.view(),
            "symbols": list(self.spec.symbols),
            "market": self.market_view(),
            "pnl": {
                "realized": round(p.realized_pnl, 6),
                "unrealized": round(p.unrealized_pnl, 6),
                "total": round(p.total_pnl, 6),
                "unrealized_pnl_pct": round(p.unrealized_pnl_pct, 6),
                "daily_drawdown_pct": round(p.daily_drawdown_pct, 6),
            },
            "equity": round(p.equity, 6),
            "cash": round(p.cash, 6),
            "gross_exposure": round(p.gross_exposure, 6),
            "orders": {
                "submitted": self.counts.submitted,
                "filled": self.counts.filled,
                "rejected": self.counts.rejected,
                "cancelled": self.counts.cancelled,
                "cancelled_no_proof_of_state": self.counts.cancelled_no_proof_of_state,
                "rejected_by_reason": dict(self.counts.rejected_by_reason),
                "working": self.orders.working_count,
            },
            "data": {
                "stale": any(v > limit for v in staleness.values()),
                "staleness_seconds": round(max(staleness.values(), default=0.0), 3),
                "stale_symbols": sorted(s for s, v in staleness.items() if v > limit),
                "missing_bars": self.data.missing_bars,
                "outliers": self.data.outliers,
            },
            "errors_total": self.errors_total,
        }

    def market_view(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "calendar": self.sessions.name,
            "open": self.sessions.is_open(now),
            "next_open": self.sessions.next_open(now),
            "allow_outside_session": self.spec.session.allow_outside_session,
            "stale_data_limit_seconds": self.spec.stale_data_limit,
        }

    def positions_view(self) -> dict[str, Any]:
        p = self.portfolio
        rows = []
        for pos in sorted(p.positions.values(), key=lambda x: x.symbol):
            price = p.marks.get(pos.symbol, pos.avg_price)
            rows.append(
                {
                    "symbol": pos.symbol,
                    "quantity": pos.quantity,
                    "side": "long" if pos.quantity > 0 else "short",
                    "avg_entry_price": round(pos.avg_price, 6),
                    "last_price": price,
                    "market_value": round(pos.quantity * price, 6),
                    "unrealized_pnl": round(pos.quantity * (price - pos.avg_price), 6),
                }
            )
        return {
            "as_of": self.clock.now(),
            "positions": rows,
            "cash": round(p.cash, 6),
            "equity": round(p.equity, 6),
            "gross_exposure": round(p.gross_exposure, 6),
        }

    def symbols_view(self) -> list[dict[str, Any]]:
        now = self.clock.monotonic()
        limit = self.spec.stale_data_limit
        rows = []
        for symbol, d in self.data.symbols.items():
            staleness = self.staleness(symbol, now)
            rows.append(
                {
                    "symbol": symbol,
                    "last_update": d.last_update,
                    "last_price": d.last_price,
                    "last_bar_time": d.last_bar_time,
                    "stale": staleness > limit,
                    "staleness_seconds": round(staleness, 3),
                    "suspect": d.suspect,
                    "bars": d.bars,
                    "missing_bars": d.missing_bars,
                    "outliers": d.outliers,
                    "position": self.portfolio.quantity(symbol),
                }
            )
        return rows

    def refresh_metrics(self) -> None:
        """Bring the state gauges up to date (called on each /metrics scrape)."""
        m, p = self.metrics, self.portfolio
        m.unrealized_pnl_pct.set(p.unrealized_pnl_pct)
        m.position_quantity.clear()
        m.position_notional.clear()
        for pos in p.positions.values():
            m.position_quantity.labels(symbol=pos.symbol).set(pos.quantity)
            m.position_notional.labels(symbol=pos.symbol).set(p.position_notional(pos.symbol))
        m.positions.set(len(p.positions))
        m.gross_exposure.set(p.gross_exposure)
        m.equity.set(p.equity)
        m.realized_pnl.set(p.realized_pnl)
        m.unrealized_pnl.set(p.unrealized_pnl)
        m.daily_drawdown_pct.set(p.daily_drawdown_pct)
        m.orders_working.set(self.orders.working_count)
        now = self.clock.monotonic()
        m.data_staleness_seconds.clear()
        for symbol in self.data.symbols:
            m.data_staleness_seconds.labels(symbol=symbol).set(self.staleness(symbol, now))
        self._sync_state(None)


class _Refused(Strategy[Any]):
    """Stands in for a strategy whose spec was refused: it is never called (its runner is FAILED)."""

    def __init__(self) -> None:
        super().__init__(None)
