"""What deleting a TradingSystem means for its engines, worded once for the operator's finalizer and the
engine's own watch.

A deletion is a HALT: no new orders, working orders cancelled. Positions are flattened only when asked
(`spec.killSwitch.closePositions: true`, or the annotation `trading.quantzoo.io/flatten-on-delete: "true"`):
deleting a resource is not a trading decision, and a GitOps prune or a mistaken `kubectl delete` must not
liquidate a book. Both the finalizer's push and the engine's own watch (which sees `deletionTimestamp`) apply
it, because a foreground deletion (Argo CD's default) lets the garbage collector delete the engine's pods
while the finalizer is still running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quantzoo_api.killswitch import KillSource, KillSwitchCommand
from quantzoo_api.types import KillSwitchMode

FLATTEN_ON_DELETE_ANNOTATION = "trading.quantzoo.io/flatten-on-delete"
DELETION_OPERATOR = "quantzoo-operator"


def is_being_deleted(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def flatten_on_delete(body: Mapping[str, Any]) -> bool:
    spec_says = bool((((body.get("spec") or {}).get("killSwitch")) or {}).get("closePositions"))
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return spec_says or str(annotations.get(FLATTEN_ON_DELETE_ANNOTATION, "")).lower() == "true"


def deletion_reason(namespace: str, name: str) -> str:
    return f"TradingSystem {namespace}/{name} is being deleted"


def deletion_command(body: Mapping[str, Any], *, source: KillSource) -> KillSwitchCommand:
    """The halt a TradingSystem's deletion stands for (flattening as `flatten_on_delete` says)."""
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    return KillSwitchCommand(
        engaged=True,
        mode=KillSwitchMode.HALT,
        close_positions=flatten_on_delete(body),
        reason=deletion_reason(str(meta.get("namespace", "")), str(meta.get("name", ""))),
        operator=DELETION_OPERATOR,
        source=source,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None,
    )
