"""Which level of the kill switch holds each TradingSystem (issue #13), in its status.

- holds.py    pure: an index of the TradingHalts, TradingAccounts and TradingSystems as watched, and from it
              each system's status.killSwitch.heldBy and Halted condition, and each level object's
              status (systems covered, halted)
- status.py   the component: its own resumable watches (quantzoo_api.watching) of the three kinds, and
              the status writes (server-side apply, field manager `quantzoo-operator-levels`), only
              where something changed
- handlers.py kopf startup/cleanup: starts and stops the component

The engines do not wait for any of this: each watches every level covering it (engine/level_watch.py).
"""
