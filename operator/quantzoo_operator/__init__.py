"""quantzoo_operator: the kopf operator that turns a TradingSystem into its engine and safety workloads.

Where things are (one concern per module):
- builders/        pure functions: TradingSystem spec -> child manifests (one module per child kind)
- status.py        every condition type and reason; pure status computation
- propagation.py   pure kill-switch planning: which replicas, what command, when done
- pushing.py       kill-switch I/O: engine endpoints, admin token, concurrent pushes
- propagator.py    the independent kill-switch loop (its own watch, outside kopf's per-object queue)
- reconciler.py    apply the children, then the status (I/O)
- handlers/        thin kopf handlers that call the above
"""

FIELD_MANAGER = "quantzoo-operator"
"""Field manager of every child object (server-side apply, force)."""

RECONCILE_STATUS_MANAGER = "quantzoo-operator-reconcile"
"""Field manager of the status reconcile owns: Ready/EngineReady/SafetyReady/Degraded, phase, engine."""

KILLSWITCH_STATUS_MANAGER = "quantzoo-operator-killswitch"
"""Field manager of the status fields the kill-switch path owns: KillSwitchEngaged and status.killSwitch."""

COMPONENT = "quantzoo-operator"
"""Reporting component of the operator's Events."""
