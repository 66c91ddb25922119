"""The kill-switch propagator: an independent asyncio task with its own watch of TradingSystems.

Why not a kopf handler: kopf runs one handler at a time per object, and after each of its own patches
waits for the patched version to come back (consistency_timeout). A kill-switch handler queued behind a
slow reconcile of the same object would wait for it. So the fast path lives outside kopf's per-object
queue entirely:

  watch thread (watch.py) --event + arrival time--> this loop --per-object task--> pushes (pushing.py)
                                                                              \\-> status + Event

- Started by the startup handler, stopped by the cleanup handler (handlers/lifecycle.py).
- One task per TradingSystem; a newer spec.killSwitch cancels the older propagation at once (latest
  wins). Every push goes to every ready engine replica concurrently, with a short deadline each, and is
  retried (0.2 s doubling to 2 s) until every replica has acknowledged; the acknowledgements, the
  latency and the KillSwitchEngaged condition go to status with the kill-switch field manager
  (its own thread pool and connection pool: kube.py), then an Event.
- While some replica has not acknowledged: Degraded (reason KillSwitchUnacknowledged), a Warning Event,
  and the `quantzoo_operator_kill_switch_unacknowledged` gauge.
- While the switch stays engaged: replicas are re-checked every keep-halt interval; a new pod, or one
  that reports ACTIVE, is pushed the halt again.
The kopf field handler on spec.killSwitch (handlers/killswitch.py) only nudges this loop: a second
trigger, never the fast path. Deletion is the finalizer's (halt_on_delete.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from quantzoo_api.killswitch import TradingState

from quantzoo_operator import KILLSWITCH_STATUS_MANAGER, events, status
from quantzoo_operator.events import EventRecorder
from quantzoo_operator.killswitch import planning as propagation
from quantzoo_operator.killswitch import tombstone
from quantzoo_operator.killswitch.planning import Ack, Intent, Outcome
from quantzoo_operator.killswitch.pushing import Pusher
from quantzoo_operator.killswitch.watching import TradingSystemWatch
from quantzoo_operator.kube import Kube, KubeError
from quantzoo_operator.metrics import OperatorMetrics
from quantzoo_operator.settings import OperatorConfig

log = logging.getLogger(__name__)

Key = tuple[str, str]
Refresh = Callable[[str, str], Awaitable[Any]]


@dataclass
class SystemState:
    namespace: str
    name: str
    uid: str
    body: dict[str, Any]
    intent: Intent | None = None
    resource_version: str = ""
    task: asyncio.Task[None] | None = None
    acks: dict[str, Ack] = field(default_factory=dict)
    unacknowledged: bool = False

    @property
    def extra(self) -> dict[str, str]:
        return {"namespace": self.namespace, "tradingsystem": self.name}


def _rv_newer(candidate: str, known: str) -> bool:
    """Is `candidate` a newer resourceVersion than `known`? (etcd revisions; opaque if not numbers)."""
    try:
        return int(candidate) > int(known)
    except ValueError:
        return candidate != known


class Propagator:
    def __init__(
        self,
        config: OperatorConfig,
        kube: Kube,
        pusher: Pusher,
        recorder: EventRecorder,
        metrics: OperatorMetrics,
        refresh_status: Refresh,
        watch_api_factory: Callable[[], client.ApiClient],
    ) -> None:
        self.config = config
        self.kube = kube
        self.pusher = pusher
        self.recorder = recorder
        self.metrics = metrics
        self.refresh_status = refresh_status
        self.watch_api_factory = watch_api_factory
        self.systems: dict[Key, SystemState] = {}
        self.watches: list[TradingSystemWatch] = []
        self._queue: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def emit(kind: str, payload: Any, arrived: float, scope: str | None = None) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, (kind, (scope, payload), arrived))

        scopes: list[str | None] = list(self.config.namespaces) or [None]
        api = self.watch_api_factory()
        for scope in scopes:
            watch = TradingSystemWatch(
                api,
                scope,
                lambda kind, payload, arrived, scope=scope: emit(kind, payload, arrived, scope),
                server_timeout=self.config.watch_server_timeout_seconds,
                connect_timeout=self.config.watch_connect_timeout_seconds,
            )
            self.watches.append(watch)
            watch.start()
        self._consumer = asyncio.create_task(self._consume(), name="kill-switch propagator")
        log.info("kill-switch propagator watching %s", ", ".join(s or "all namespaces" for s in scopes))

    async def stop(self) -> None:
        for watch in self.watches:
            watch.stop()
        tasks = [s.task for s in self.systems.values() if s.task] + list(self._side_tasks)
        if self._consumer:
            tasks.append(self._consumer)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "alive": bool(self._consumer and not self._consumer.done())
            and all(w.is_alive() for w in self.watches),
            "synced": all(w.synced.is_set() for w in self.watches),
            "tradingsystems": len(self.systems),
            "unacknowledged": sum(1 for s in self.systems.values() if s.unacknowledged),
            "lastContactSecondsAgo": round(max((now - w.last_contact for w in self.watches), default=0.0), 1),
        }

    # -- input ---------------------------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            kind, (scope, payload), arrived = await self._queue.get()
            try:
                if kind == "SYNC":
                    self._sync(scope, payload, arrived)
                elif kind == "DELETED":
                    self._forget(payload)
                else:
                    self.observe(payload, arrived)
            except Exception:
                log.exception("kill-switch propagator could not handle a %s event", kind)
            self._update_gauges()

    def _sync(self, scope: str | None, items: list[dict[str, Any]], arrived: float) -> None:
        present = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
        for key in list(self.systems):
            if (scope is None or key[0] == scope) and key not in present:
                self._forget(self.systems[key].body)
        for item in items:
            self.observe(item, arrived)

    def nudge(self, body: Mapping[str, Any]) -> None:
        """A second trigger (the kopf field handler): acts only on a version newer than the watch's."""
        meta = body.get("metadata") or {}
        known = self.systems.get((meta.get("namespace"), meta.get("name")))
        rv = str(meta.get("resourceVersion") or "")
        if known is not None and known.uid == meta.get("uid") and not _rv_newer(rv, known.resource_version):
            return
        self.observe(dict(body), time.monotonic())

    def observe(self, body: dict[str, Any], arrived: float) -> None:
        meta = body.get("metadata") or {}
        key = (meta["namespace"], meta["name"])
        state = self.systems.get(key)
        first = state is None or state.uid != meta.get("uid")
        if first:
            if state is not None:
                self._cancel(state)
            state = SystemState(key[0], key[1], meta.get("uid", ""), body)
            self.systems[key] = state
        assert state is not None
        state.body = body
        state.resource_version = str(meta.get("resourceVersion") or "")
        if meta.get("deletionTimestamp"):
            self._cancel(state)  # the finalizer halts the engine before the workloads go
            return
        if (body.get("status") or {}).get("observedGeneration") is not None:  # reconciled: Secret exists
            self.pusher.warm_token(key[0], key[1])
        intent = Intent.from_body(body)
        previous = state.intent
        if not first and previous is not None and previous.fingerprint == intent.fingerprint:
            state.intent = intent  # newer generation, same switch: nothing to push
            return
        push = propagation.should_push(None if first else previous, intent)
        state.intent = intent
        self._cancel(state)
        state.task = asyncio.create_task(
            self._run(state, intent, arrived, push), name=f"kill-switch {key[0]}/{key[1]}"
        )

    def _forget(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        state = self.systems.pop((meta.get("namespace"), meta.get("name")), None)
        if state is not None:
            self._cancel(state)

    def _cancel(self, state: SystemState) -> None:
        if state.task is not None and not state.task.done():
            state.task.cancel()
        state.task = None

    def _update_gauges(self) -> None:
        self.metrics.managed.set(len(self.systems))
        self.metrics.unacknowledged.set(sum(1 for s in self.systems.values() if s.unacknowledged))

    # -- one TradingSystem ---------------------------------------------------------------------------
    async def _run(self, state: SystemState, intent: Intent, arrived: float, push: bool) -> None:
        try:
            if push and not intent.engaged and intent.release:
                await self._disarm_tombstone(state)
            if push:
                state.acks = {}
                await self._propagate(state, intent, arrived, measure=True)
            else:
                await self._record_observed(state, intent)
            if intent.engaged:
                await self._keep_halt(state, intent)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kill-switch propagation failed", extra=state.extra)

    async def _disarm_tombstone(self, state: SystemState) -> None:
        """A release of the live object ends a halt carried over a delete-and-recreate (tombstone.py)."""
        try:
            await tombstone.disarm(self.kube, state.body)
        except Exception as exc:  # the next release (or resume) tries again; the release itself stands
            log.warning("kill tombstone not disarmed: %s", exc, extra=state.extra)

    async def _propagate(self, state: SystemState, intent: Intent, arrived: float, *, measure: bool) -> None:
        """Push until every ready replica has acknowledged `intent` (or a newer intent cancels this)."""
        ns, name = state.namespace, state.name
        command = propagation.command(intent)
        failures: dict[str, str] = {}
        delays = propagation.retry_delays(self.config.retry_initial_seconds, self.config.retry_max_seconds)
        warned = False
        while True:
            try:
                targets = await self.pusher.targets(ns, name)
            except Exception as exc:  # the API server is unreachable: the engine's own watch is the path
                log.warning("cannot list engine pods: %s", exc, extra=state.extra)
                await asyncio.sleep(next(delays))
                continue
            todo = propagation.pending(targets, state.acks)
            acks, failures = await self.pusher.push(ns, name, todo, command)
            for ack in acks:
                if propagation.acknowledges(intent.engaged, ack.ack):
                    state.acks[ack.target.uid] = ack
                else:
                    failures[ack.target.pod] = f"answered {ack.ack.trading_state}, engaged={ack.ack.engaged}"
            outcome = Outcome.of(targets, state.acks, failures)
            if outcome.done:
                latency_ms = (time.monotonic() - arrived) * 1000 if outcome.total else None
                await self._write_status(state, intent, outcome, latency_ms)
                if measure and latency_ms is not None:
                    self.metrics.propagation_seconds.observe(latency_ms / 1000)
                if measure or warned or state.unacknowledged:
                    reason = events.KILL_SWITCH_ENGAGED if intent.engaged else events.KILL_SWITCH_RELEASED
                    self.recorder.post(
                        state.body, events.NORMAL, reason, propagation.summary(intent, outcome, latency_ms)
                    )
                if state.unacknowledged:
                    state.unacknowledged = False
                    self._update_gauges()
                await self._refresh(state)
                return
            if propagation.release_refused(intent, outcome.failures):
                # The engine is held by another engagement: never re-push this release (finding 4).
                await self._write_status(state, intent, outcome, None)
                self.recorder.post(
                    state.body,
                    events.WARNING,
                    events.KILL_SWITCH_UNACKNOWLEDGED,
                    propagation.summary(intent, outcome).replace("; retrying", "")
                    + "; the release names another engagement than the one holding the engine: not retried",
                )
                await self._refresh(state)
                return
            if not warned:
                warned = True
                state.unacknowledged = True
                self._update_gauges()
                await self._write_status(state, intent, outcome, None)
                self.recorder.post(
                    state.body,
                    events.WARNING,
                    events.KILL_SWITCH_UNACKNOWLEDGED,
                    propagation.summary(intent, outcome),
                )
                await self._refresh(state)
            delay = next(delays)
            if propagation.only_refused_by_policy(outcome.failures):
                # Not dialled, so not retried at the fast cadence: a replaced pod is seen at the
                # keep-halt cadence, as for an engaged switch.
                delay = max(delay, self.config.keep_halt_interval_seconds)
            await asyncio.sleep(delay)

    async def _keep_halt(self, state: SystemState, intent: Intent) -> None:
        """While engaged: a replica that has not acknowledged (a new pod) or reports ACTIVE gets the halt
        again."""
        while True:
            await asyncio.sleep(self.config.keep_halt_interval_seconds)
            try:
                targets = await self.pusher.targets(state.namespace, state.name)
            except Exception as exc:
                log.debug("keep-halt check skipped: %s", exc, extra=state.extra)
                continue
            current = {t.uid for t in targets}
            gone = [uid for uid in state.acks if uid not in current]
            for uid in gone:
                state.acks.pop(uid)
            known = [t for t in targets if t.uid in state.acks]
            states = await asyncio.gather(*(self.pusher.trading_state(t) for t in known))
            active = [t for t, s in zip(known, states, strict=True) if s is TradingState.ACTIVE]
            for t in active:
                state.acks.pop(t.uid, None)
            # Halted but with orders still working (the broker refused or timed out the cancels): push
            # again, so the engine retries now and status shows the clean-up once it is done.
            unfinished = [uid for uid, ack in state.acks.items() if not ack.complete]
            for uid in unfinished:
                state.acks.pop(uid)
            if active:
                self.recorder.post(
                    state.body,
                    events.WARNING,
                    events.KILL_SWITCH_REASSERTED,
                    f"{', '.join(t.pod for t in active)} reported ACTIVE while the kill switch is engaged; "
                    "pushing the halt again",
                )
            if active or unfinished or propagation.pending(targets, state.acks) or gone:
                await self._propagate(state, intent, time.monotonic(), measure=False)

    async def _record_observed(self, state: SystemState, intent: Intent) -> None:
        """First sight of a switch that needs no push: make sure status tells the truth about it."""
        existing = status.find((state.body.get("status") or {}).get("conditions"), "KillSwitchEngaged")
        if existing is not None and existing.get("status") == ("True" if intent.engaged else "False"):
            return
        patch = propagation.observed_patch(
            intent, current_status=state.body.get("status"), now=status.now_iso_ms()
        )
        await self._apply_status(state, patch)

    # -- output --------------------------------------------------------------------------------------
    async def _write_status(
        self, state: SystemState, intent: Intent, outcome: Outcome, latency_ms: float | None
    ) -> None:
        patch = propagation.status_patch(
            intent,
            outcome,
            latency_ms=latency_ms,
            current_status=state.body.get("status"),
            now=status.now_iso_ms(),
        )
        await self._apply_status(state, patch)

    async def _apply_status(self, state: SystemState, patch: Mapping[str, Any]) -> None:
        delays = propagation.retry_delays(self.config.retry_initial_seconds, self.config.retry_max_seconds)
        while True:
            try:
                await self.kube.apply_status(
                    state.namespace,
                    state.name,
                    status.apply_body(state.namespace, state.name, patch),
                    KILLSWITCH_STATUS_MANAGER,
                    kill=True,
                )
                return
            except KubeError as exc:
                if exc.status == 404:
                    return
                log.warning("cannot write kill-switch status: %s", exc, extra=state.extra)
            except Exception as exc:
                log.warning("cannot write kill-switch status: %s", type(exc).__name__, extra=state.extra)
            await asyncio.sleep(next(delays))

    async def _refresh(self, state: SystemState) -> None:
        """Let the reconcile writer recompute Degraded and phase from the new kill-switch facts, in the
        background (the kill path does not wait for it)."""

        async def refresh() -> None:
            with contextlib.suppress(Exception):
                await self.refresh_status(state.namespace, state.name)

        task = asyncio.create_task(refresh())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
