"""Thin kopf handlers: each receives what it needs and delegates to the operator's plain modules.

- lifecycle.py   startup (kopf settings, the runtime, the propagator, /healthz) and cleanup
- reconcile.py   create / update / resume / periodic resync of a TradingSystem
- children.py    events on owned children: restore drift, refresh readiness
- killswitch.py  spec.killSwitch field handler: a second trigger for the independent propagator
- deletion.py    the finalizer: halt the engine before the workloads go
- accounts.py    TradingAccounts: their status, and their systems reconciled when one changes
"""
