"""The finalizer's work (`trading.quantzoo.io/halt-before-delete`): halt every engine replica before a
TradingSystem's workloads are garbage-collected.

- Always a HALT (no new orders, working orders cancelled). Positions are flattened only when asked
  (`quantzoo_api.deletion`: a GitOps prune or a mistaken `kubectl delete` must not liquidate a book).
- Retries until every live replica acknowledges, for at most `delete_halt_timeout_seconds`; then a
  Warning Event says the deletion proceeds without a confirmed halt, and deletion proceeds (a finalizer
  that never lets go blocks the namespace, and the engine stops new orders on SIGTERM anyway).
- A foreground deletion (Argo CD's default, `kubectl delete --cascade=foreground`) has the garbage collector
  delete the engine's pods while this runs. A terminating replica is dialled once: its SIGTERM has already
  stopped new orders and cancels working orders, and its own watch applies the deletion (flattening too),
  but only an answer confirms a flatten, so an unanswered one asked to flatten is a Warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from quantzoo_api.deletion import deletion_command
from quantzoo_api.engine_pods import Target
from quantzoo_api.killswitch import KillSource

from quantzoo_operator import events
from quantzoo_operator.events import EventRecorder
from quantzoo_operator.killswitch import planning as propagation
from quantzoo_operator.killswitch.planning import Ack, Outcome
from quantzoo_operator.killswitch.pushing import Pusher
from quantzoo_operator.settings import OperatorConfig

log = logging.getLogger(__name__)


async def halt_before_delete(
    body: Mapping[str, Any], pusher: Pusher, recorder: EventRecorder, config: OperatorConfig
) -> bool:
    """Returns True when every replica acknowledged the halt (or none was running, or the only ones that did
    not answer were terminating and no flatten was asked)."""
    meta = body.get("metadata") or {}
    ns, name = meta["namespace"], meta["name"]
    extra = {"namespace": ns, "tradingsystem": name}
    command = deletion_command(body, source=KillSource.FINALIZER)
    what = "halt and flatten" if command.close_positions else "halt"
    deadline = time.monotonic() + config.delete_halt_timeout_seconds
    delays = propagation.retry_delays(config.retry_initial_seconds, config.retry_max_seconds)
    acks: dict[str, Ack] = {}
    failures: dict[str, str] = {}
    stopping: dict[str, str] = {}  # terminating pod -> why it did not answer (not dialled again)
    targets: list[Target] = []
    started = time.monotonic()
    while True:
        try:
            listed = await pusher.targets(ns, name, terminating=True)
            targets = [t for t in listed if t.pod not in stopping]
            got, failures = await pusher.push(ns, name, propagation.pending(targets, acks), command)
            for ack in got:
                if propagation.acknowledges(True, ack.ack):
                    acks[ack.target.uid] = ack
                else:
                    failures[ack.target.pod] = f"answered {ack.ack.trading_state}"
            for target in targets:
                if target.terminating and target.pod in failures:
                    stopping[target.pod] = failures.pop(target.pod)
            targets = [t for t in targets if t.pod not in stopping]
        except Exception as exc:
            failures = {"(engine pods)": f"cannot list them: {exc}"}
        outcome = Outcome.of(targets, acks, failures)
        if outcome.done and "(engine pods)" not in failures:
            elapsed = time.monotonic() - started
            return _report(body, recorder, outcome, stopping, command.close_positions, elapsed, extra)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            missing = "; ".join(f"{pod}: {why}" for pod, why in failures.items()) or "no answer"
            recorder.post(
                body,
                events.WARNING,
                events.DELETE_WITHOUT_HALT,
                f"Could not confirm the engine {what} within {config.delete_halt_timeout_seconds:g}s "
                f"({outcome.acknowledged}/{outcome.total} replicas acknowledged; {missing}); "
                "deletion proceeds",
            )
            log.warning("deletion proceeds without a confirmed halt", extra=extra)
            return False
        await asyncio.sleep(min(next(delays), remaining))


def _report(
    body: Mapping[str, Any],
    recorder: EventRecorder,
    outcome: Outcome,
    stopping: Mapping[str, str],
    flatten: bool,
    elapsed: float,
    extra: Mapping[str, str],
) -> bool:
    if outcome.total == 0 and not stopping:
        recorder.post(
            body, events.NORMAL, events.HALTED_BEFORE_DELETE, "No engine replica was running; nothing to halt"
        )
        return True
    what = "halt and flatten" if flatten else "halt"
    closed = sum(len(a.ack.closed_positions) for a in outcome.acks)
    cancelled = sum(len(a.ack.cancelled_orders) for a in outcome.acks)
    message = (
        f"Engine {what} acknowledged by {outcome.acknowledged}/{outcome.total + len(stopping)} replicas in "
        f"{elapsed * 1000:.0f} ms ({cancelled} orders cancelled, {closed} positions closed)"
    )
    if not stopping:
        recorder.post(body, events.NORMAL, events.HALTED_BEFORE_DELETE, f"{message}; deletion proceeds")
        return True
    unanswered = "; ".join(f"{pod}: {why}" for pod, why in sorted(stopping.items()))
    message += (
        f"; {len(stopping)} already terminating did not answer ({unanswered}): SIGTERM stopped their new "
        "orders and cancels their working orders"
    )
    if not flatten:
        recorder.post(body, events.NORMAL, events.HALTED_BEFORE_DELETE, f"{message}; deletion proceeds")
        return True
    recorder.post(
        body,
        events.WARNING,
        events.DELETE_WITHOUT_HALT,
        f"{message}, and their own watch of the deletion flattens them, unconfirmed; deletion proceeds",
    )
    log.warning("deletion proceeds without a confirmed flatten", extra=dict(extra))
    return False
