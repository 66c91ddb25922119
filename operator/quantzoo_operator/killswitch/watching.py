"""A resumable list+watch of TradingSystems in one scope, on a thread of its own.

The kill-switch propagator must not depend on kopf's per-object queue, so it watches TradingSystems
itself: list (-> SYNC with every item), then watch from the list's resourceVersion with bookmarks;
resume from the last resourceVersion when a stream ends (server timeout) or breaks; re-list on
410 Gone. Every request has bounded timeouts, so a silent stream is dropped and re-opened. Events are
handed to the asyncio loop with the monotonic time they arrived (the start of the propagation latency).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from quantzoo_api import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

Emit = Callable[[str, Any, float], None]
"""emit(kind, payload, monotonic_time): kind is SYNC (payload: list of items) or ADDED/MODIFIED/DELETED."""


class TradingSystemWatch(threading.Thread):
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str | None,
        emit: Emit,
        *,
        server_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        super().__init__(name=f"ts-watch-{namespace or 'all'}", daemon=True)
        self.api = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.emit = emit
        self.server_timeout = max(1, int(server_timeout))
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.stopping = threading.Event()
        self.last_contact = time.monotonic()
        self.synced = threading.Event()
        self._watch: watch.Watch | None = None

    def stop(self) -> None:
        self.stopping.set()
        if self._watch is not None:
            self._watch.stop()

    # -- the API calls -------------------------------------------------------------------------------
    def _list(self) -> dict[str, Any]:
        if self.namespace:
            return self.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, _request_timeout=(self.connect_timeout, 30)
            )
        return self.api.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, _request_timeout=(self.connect_timeout, 30)
        )

    def _stream(self, w: watch.Watch, rv: str) -> Any:
        kwargs = {
            "resource_version": rv,
            "timeout_seconds": self.server_timeout,
            "allow_watch_bookmarks": True,
            "_request_timeout": (self.connect_timeout, self.server_timeout + 15),
        }
        if self.namespace:
            return w.stream(
                self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, **kwargs
            )
        return w.stream(self.api.list_cluster_custom_object, GROUP, VERSION, PLURAL, **kwargs)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        rv: str | None = None
        backoff = 0.2
        while not self.stopping.is_set():
            try:
                if rv is None:
                    listing = self._list()
                    rv = listing["metadata"]["resourceVersion"]
                    self.last_contact = time.monotonic()
                    self.emit("SYNC", list(listing.get("items") or []), self.last_contact)
                    self.synced.set()
                self._watch = w = watch.Watch()
                for event in self._stream(w, rv):
                    arrived = time.monotonic()
                    self.last_contact = arrived
                    kind, obj = event["type"], event["raw_object"]
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.emit(kind, obj, arrived)
                    if self.stopping.is_set():
                        break
                self.last_contact = time.monotonic()
                backoff = 0.2
            except ApiException as exc:
                if exc.status == 410:
                    log.info(
                        "watch of %s expired (410 Gone); listing again", self.namespace or "all namespaces"
                    )
                    rv = None
                    continue
                log.warning(
                    "watch of TradingSystems in %s failed: HTTP %s", self.namespace or "all", exc.status
                )
                backoff = self._sleep(backoff)
            except RuntimeError:  # the event loop is gone: the operator is exiting
                return
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log.warning(
                    "watch of TradingSystems in %s broke: %s", self.namespace or "all", type(exc).__name__
                )
                backoff = self._sleep(backoff)

    def _sleep(self, backoff: float) -> float:
        self.stopping.wait(backoff)
        return min(backoff * 2, self.max_backoff)
