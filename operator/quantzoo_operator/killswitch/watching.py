"""The propagator's watch of TradingSystems in one scope: a thread running the shared resumable loop.

The kill-switch propagator must not depend on kopf's per-object queue, so it watches TradingSystems
itself, on `quantzoo_api.watching.ResumableWatch` (the engine's loop too): list (-> SYNC with every item),
watch from the list's resourceVersion with bookmarks, resume from the last resourceVersion when the server
ends a stream, list again on 410 Gone or after a failure, client-side timeouts on every request so a
silent stream is dropped. This module only adapts it: events go to the asyncio loop with the monotonic
time they arrived (the start of the propagation latency), and the health view (synced, last contact).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.watching import Backoff, ResumableWatch, WatchTimeouts

log = logging.getLogger(__name__)

Emit = Callable[[str, Any, float], None]
"""emit(kind, payload, monotonic_time): kind is SYNC (payload: list of items) or ADDED/MODIFIED/DELETED."""

# How long past the server's own timeout a silent watch is kept, and how long a list may take.
CLIENT_GRACE_SECONDS = 15.0
LIST_READ_SECONDS = 30.0


class TradingSystemWatch(threading.Thread):
    """`api`: an ApiClient (or anything with the CustomObjectsApi list methods, for unit tests)."""

    def __init__(
        self,
        api: Any,
        namespace: str | None,
        emit: Emit,
        *,
        server_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        super().__init__(name=f"ts-watch-{namespace or 'all'}", daemon=True)
        objects = api if hasattr(api, "list_cluster_custom_object") else client.CustomObjectsApi(api)
        self.namespace = namespace
        self.emit = emit
        self.last_contact = time.monotonic()
        self.synced = threading.Event()
        if namespace:
            list_fn, args = objects.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
        else:
            list_fn, args = objects.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        timeouts = WatchTimeouts(
            server_seconds=max(1, int(server_timeout)),
            client_grace_seconds=CLIENT_GRACE_SECONDS,
            connect_seconds=connect_timeout,
            read_seconds=LIST_READ_SECONDS,
        )
        self.loop = ResumableWatch(
            list_fn, args, self, timeouts=timeouts, backoff=Backoff(initial=0.2, maximum=max_backoff)
        )

    def stop(self) -> None:
        self.loop.stop()

    def run(self) -> None:
        self.loop.run()

    def _emit(self, kind: str, payload: Any) -> None:
        self.last_contact = arrived = time.monotonic()
        try:
            self.emit(kind, payload, arrived)
        except RuntimeError:  # the event loop is gone: the operator is exiting
            self.stop()

    # -- quantzoo_api.watching.WatchHandler ----------------------------------------------------------
    def listed(self, items: list[dict[str, Any]]) -> None:
        self._emit("SYNC", items)
        self.synced.set()

    def event(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self._emit(event_type, obj)
        else:
            self.last_contact = time.monotonic()

    def unchanged(self) -> None:
        self.last_contact = time.monotonic()

    def failed(self, reason: str) -> None:
        log.warning("watch of TradingSystems in %s: %s", self.namespace or "all namespaces", reason)
