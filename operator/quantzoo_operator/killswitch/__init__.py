"""The operator's kill path, one concern per module:

- planning.py    pure: what spec.killSwitch asks for, the command, which replicas, acks, status -- no I/O
- pushing.py     the HTTP push of a command to every engine pod (by pod IP, Ready or not)
- propagator.py  the independent asyncio loop: watch -> push -> status + Event, keep-halt, retries
- watching.py    the propagator's resumable watch of TradingSystems (a thread)
- finalizer.py   halt before a TradingSystem's workloads go; records an engaged halt in a tombstone
- tombstone.py   an engaged halt outlives delete-and-recreate (a labelled ConfigMap, not owned by the TS)
"""
