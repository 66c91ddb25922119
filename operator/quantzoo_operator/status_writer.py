"""Writes the status fields reconcile owns (server-side apply, field manager
`quantzoo-operator-reconcile`), and posts an Event when a condition changes.

Called from the reconcile handler, from child events (a StatefulSet became ready) and from the
kill-switch propagator (an unacknowledged switch makes Degraded True). Writes for one TradingSystem are
serialised and each reads the TradingSystem fresh inside the lock (its workloads as the child watch
last saw them, workloads.py), so the last write always reflects the newest facts. The generation and
error of the last reconcile are remembered here: a refresh from another
path never claims a generation that reconcile has not applied yet -- with one exception: a newer
generation that differs from the reconciled one only in spec.killSwitch. kopf does not reconcile such a
change (it is outside kopf's diff base), the children it would build are the same, and the kill switch
has its own status; so the refresh records that generation as observed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from quantzoo_api.conditions import RECONCILE_CONDITIONS

from quantzoo_operator import RECONCILE_STATUS_MANAGER, events, names, status
from quantzoo_operator.events import EventRecorder
from quantzoo_operator.kube import Kube
from quantzoo_operator.workloads import WorkloadCache

log = logging.getLogger(__name__)

Key = tuple[str, str]

REFRESH_SETTLE_SECONDS = 0.5
"""How long a workload event's refresh waits: a starting pod moves its StatefulSet or Deployment through
several states within that time, and one refresh (one status write at most) covers them all."""

_TRANSITION_EVENTS = {
    # (condition type, new status): (event type, reason)
    (status.ConditionType.ENGINE_READY, "True"): (events.NORMAL, events.ENGINE_READY),
    (status.ConditionType.ENGINE_READY, "False"): (events.WARNING, events.ENGINE_NOT_READY),
    (status.ConditionType.SAFETY_READY, "True"): (events.NORMAL, events.SAFETY_READY),
    (status.ConditionType.SAFETY_READY, "False"): (events.WARNING, events.SAFETY_NOT_READY),
    (status.ConditionType.READY, "True"): (events.NORMAL, events.READY),
    (status.ConditionType.DEGRADED, "True"): (events.WARNING, events.DEGRADED),
    (status.ConditionType.DEGRADED, "False"): (events.NORMAL, events.RECOVERED),
}


def transition_events(changes: list[status.Transition]) -> list[tuple[str, str, str]]:
    """(event type, reason, message) for the condition changes of one status write. When Ready turns
    True in the same write, its one Event covers EngineReady and SafetyReady turning True (a creation
    burst of 300 systems posted 3 Events each for it: 600 of the 3,000 the API server took)."""
    ready_now = any(c.type == status.ConditionType.READY and c.new == "True" for c in changes)
    covered = {status.ConditionType.ENGINE_READY, status.ConditionType.SAFETY_READY}
    out = []
    for change in changes:
        if change.old is None and change.new == "False":
            continue  # the first status of a new TradingSystem: nothing became worse
        if change.reason == status.Reason.KILL_SWITCH_UNACKNOWLEDGED:
            continue  # the kill-switch path posts its own, more precise, warning
        if ready_now and change.new == "True" and change.type in covered:
            continue
        spec = _TRANSITION_EVENTS.get((change.type, change.new))
        if spec is not None:
            out.append((*spec, change.message or f"{change.type} is {change.new}"))
    return out


def reconciled_inputs(body: Mapping[str, Any]) -> str:
    """Digest of what a reconcile builds children from: the spec without the kill switch."""
    spec = {k: v for k, v in (body.get("spec") or {}).items() if k != "killSwitch"}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _owned_view(current: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a status this writer owns, for a no-change comparison."""
    conds = {
        c["type"]: {k: v for k, v in c.items()}
        for c in current.get("conditions") or ()
        if c.get("type") in set(RECONCILE_CONDITIONS)
    }
    return {
        "phase": current.get("phase"),
        "observedGeneration": current.get("observedGeneration"),
        "engine": current.get("engine"),
        "conditions": conds,
    }


class StatusWriter:
    def __init__(self, kube: Kube, recorder: EventRecorder, workloads: WorkloadCache | None = None) -> None:
        self.kube = kube
        self.recorder = recorder
        self.workloads = WorkloadCache() if workloads is None else workloads
        self.settle_seconds = REFRESH_SETTLE_SECONDS
        self._due: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[Key, asyncio.Lock] = {}
        self._generation: dict[Key, int] = {}
        self._error: dict[Key, str | None] = {}
        self._reason: dict[Key, status.Reason] = {}
        self._inputs: dict[Key, str] = {}

    def record_reconcile(
        self,
        namespace: str,
        name: str,
        generation: int | None,
        error: str | None,
        reason: status.Reason = status.Reason.RECONCILE_FAILED,
        inputs: str | None = None,
    ) -> None:
        key = (namespace, name)
        if generation is not None:
            self._generation[key] = generation
            if inputs is not None:
                self._inputs[key] = inputs
        self._error[key] = error
        self._reason[key] = reason

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        for store in (self._locks, self._generation, self._error, self._reason, self._inputs):
            store.pop(key, None)
        self.workloads.forget(namespace, (names.engine(name), names.safety(name)))

    def refresh_soon(self, namespace: str, name: str) -> None:
        """Refresh once the workloads have settled for `settle_seconds`; returns at once. Refreshed at
        every workload event instead, a creation burst of 300 systems wrote each system's status about 4
        times (each intermediate replica count) instead of 2 (bench/results/scale.json)."""
        key = (namespace, name)
        if key in self._due:
            return  # the refresh already due reads the newest workloads when it runs
        self._due.add(key)
        task = asyncio.get_running_loop().create_task(self._refresh_later(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_later(self, key: Key) -> None:
        await asyncio.sleep(self.settle_seconds)
        self._due.discard(key)  # an event from now on asks for another refresh: this one may miss it
        try:
            await self.refresh(*key)
        except Exception as exc:
            log.warning(
                "status refresh failed: %s", exc, extra={"namespace": key[0], "tradingsystem": key[1]}
            )

    async def _workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """As the child watch last saw it; read from the API server only when not seen yet."""
        seen = self.workloads.get(kind, namespace, name)
        if seen is not None:
            return seen
        obj = await self.kube.get("apps/v1", kind, namespace, name)
        if obj is not None:
            self.workloads.observe(None, obj)
        return obj

    async def refresh(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            ts = await self.kube.get_tradingsystem(namespace, name)
            if ts is None:
                return None
            sts, deploy = await asyncio.gather(
                self._workload("StatefulSet", namespace, names.engine(name)),
                self._workload("Deployment", namespace, names.safety(name)),
            )
            current = ts.get("status") or {}
            generation = self._generation.get(key, current.get("observedGeneration"))
            newest = (ts.get("metadata") or {}).get("generation")
            if (
                key in self._generation
                and self._error.get(key) is None
                and isinstance(newest, int)
                and newest > self._generation[key]
                and self._inputs.get(key) == reconciled_inputs(ts)
            ):
                generation = self._generation[key] = newest  # only spec.killSwitch changed since
            new = status.reconcile_status(
                ts,
                sts,
                deploy,
                observed_generation=generation,
                reconcile_error=self._error.get(key),
                now=status.now_iso(),
                error_reason=self._reason.get(key, status.Reason.RECONCILE_FAILED),
            )
            if _owned_view(new) == _owned_view(current):
                return new
            await self.kube.apply_status(
                namespace, name, status.apply_body(namespace, name, new), RECONCILE_STATUS_MANAGER
            )
            self._post_transitions(ts, current.get("conditions"), new["conditions"])
            return new

    def _post_transitions(
        self, ts: Mapping[str, Any], old: list[dict[str, Any]] | None, new: list[dict[str, Any]]
    ) -> None:
        for type_, reason, message in transition_events(status.transitions(old, new)):
            self.recorder.post(ts, type_, reason, message)
