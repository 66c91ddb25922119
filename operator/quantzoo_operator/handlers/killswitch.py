"""kopf's own watch events as a belt-and-braces second trigger of the kill-switch propagator.

The fast path is the independent propagator (propagator.py), which has its own watch and never waits in
kopf's per-object queue. spec.killSwitch is outside kopf's diff base (settings.py), so no kopf change
handler sees it; this raw event handler (no progress or diff-base writes) hands every newer body to the
propagator, which ignores versions it has already seen, so a late or duplicate call pushes nothing twice.
"""

from __future__ import annotations

from typing import Any

import kopf
from quantzoo_api import GROUP, PLURAL, VERSION

from quantzoo_operator.runtime import Runtime


@kopf.on.event(GROUP, VERSION, PLURAL, id="kill-switch-nudge")
async def kill_switch_seen(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        return  # deletion is the finalizer's (handlers/deletion.py)
    runtime: Runtime = memo["runtime"]
    runtime.propagator.nudge(dict(body))
