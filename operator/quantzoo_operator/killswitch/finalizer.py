"""The finalizer's work (`trading.quantzoo.io/halt-before-delete`): halt every engine replica before a
TradingSystem's workloads are garbage-collected.

- Always a HALT (no new orders, working orders cancelled). Positions are flattened only when asked:
  `spec.killSwitch.closePositions: true`, or the annotation `trading.quantzoo.io/flatten-on-delete: "true"`.
  Deleting a resource is not a trading decision: a GitOps prune or a mistaken `kubectl delete` must not
  liquidate a book; whoever wants a flat book on delete says so.
- Retries until every ready replica acknowledges, for at most `delete_halt_timeout_seconds`; then a
  Warning Event says the deletion proceeds without a confirmed halt, and deletion proceeds (a finalizer
  that never lets go blocks the namespace, and the engine stops new orders on SIGTERM anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from quantzoo_api.engine_pods import Target

from quantzoo_operator import events
from quantzoo_operator.events import EventRecorder
from quantzoo_operator.killswitch import planning as propagation
from quantzoo_operator.killswitch.planning import Ack, Outcome
from quantzoo_operator.killswitch.pushing import Pusher
from quantzoo_operator.settings import FLATTEN_ON_DELETE_ANNOTATION, OperatorConfig

log = logging.getLogger(__name__)


def flatten_on_delete(body: Mapping[str, Any]) -> bool:
    spec_says = bool((((body.get("spec") or {}).get("killSwitch")) or {}).get("closePositions"))
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return spec_says or str(annotations.get(FLATTEN_ON_DELETE_ANNOTATION, "")).lower() == "true"


async def halt_before_delete(
    body: Mapping[str, Any], pusher: Pusher, recorder: EventRecorder, config: OperatorConfig
) -> bool:
    """Returns True when every replica acknowledged the halt (or none was running)."""
    meta = body.get("metadata") or {}
    ns, name = meta["namespace"], meta["name"]
    extra = {"namespace": ns, "tradingsystem": name}
    close = flatten_on_delete(body)
    command = propagation.deletion_command(close_positions=close, generation=int(meta.get("generation") or 0))
    what = "halt and flatten" if close else "halt"
    deadline = time.monotonic() + config.delete_halt_timeout_seconds
    delays = propagation.retry_delays(config.retry_initial_seconds, config.retry_max_seconds)
    acks: dict[str, Ack] = {}
    failures: dict[str, str] = {}
    targets: list[Target] = []
    started = time.monotonic()
    while True:
        try:
            targets = await pusher.targets(ns, name)
            got, failures = await pusher.push(ns, name, propagation.pending(targets, acks), command)
            for ack in got:
                if propagation.acknowledges(True, ack.ack):
                    acks[ack.target.uid] = ack
                else:
                    failures[ack.target.pod] = f"answered {ack.ack.trading_state}"
        except Exception as exc:
            failures = {"(engine pods)": f"cannot list them: {exc}"}
        outcome = Outcome.of(targets, acks, failures)
        if outcome.done and "(engine pods)" not in failures:
            if outcome.total == 0:
                message = "No engine replica was running; nothing to halt before deletion"
            else:
                closed = sum(len(a.ack.closed_positions) for a in outcome.acks)
                cancelled = sum(len(a.ack.cancelled_orders) for a in outcome.acks)
                message = (
                    f"Engine {what} acknowledged by {outcome.acknowledged}/{outcome.total} replicas in "
                    f"{(time.monotonic() - started) * 1000:.0f} ms ({cancelled} orders cancelled, "
                    f"{closed} positions closed); deletion proceeds"
                )
            recorder.post(body, events.NORMAL, events.HALTED_BEFORE_DELETE, message)
            return True
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
