"""spec.killSwitch as a kopf field handler: a belt-and-braces second trigger.

The fast path is the independent propagator (propagator.py), which has its own watch and never waits in
kopf's per-object queue. This handler only hands the newest body to it; the propagator ignores versions
it has already seen, so a late or duplicate call pushes nothing twice.
"""

from __future__ import annotations

from typing import Any

import kopf
from quantzoo_api import GROUP, PLURAL, VERSION

from quantzoo_operator.metrics import METRICS
from quantzoo_operator.runtime import Runtime


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.killSwitch", id="kill-switch-nudge")
@METRICS.instrument("kill_switch_field")
async def kill_switch_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    runtime.propagator.nudge(dict(body))
