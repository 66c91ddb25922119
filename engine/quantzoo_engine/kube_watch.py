"""The engine watches its own TradingSystem, so a kill reaches it even when the operator is down.

Two parts:
- `interpret_event`: pure function from one watch event (type + object) to what the engine should do.
- `KubeWatch`: a small class that GETs the object, then watches it, and hands each action to a callback
  on the engine's event loop. On any failure it reports `ViewLost` (the engine goes HALTED until it has
  read the state again: design.md, kill-switch contract point 4), backs off and starts over.

The Kubernetes client is synchronous, so the GET/watch loop runs in a daemon thread. The `kubernetes`
package is imported only when a KubeWatch is actually built.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_api.types import TradingSystemSpec, parse_spec

from quantzoo_engine.killswitch import command_from_spec

log = logging.getLogger(__name__)

WATCH_SOURCE = "kubernetes-watch"


@dataclass(frozen=True, slots=True)
class SpecObserved:
    """The current spec was read: apply live changes, apply its kill switch, the state is now known."""

    spec: TradingSystemSpec
    generation: int | None
    resource_version: str | None
    kill_switch: KillSwitchCommand


@dataclass(frozen=True, slots=True)
class ViewLost:
    """The engine can no longer tell what the kill switch says."""

    reason: str


@dataclass(frozen=True, slots=True)
class ResourceDeleted:
    """The TradingSystem is gone (its finalizer already halted and flattened): stay halted."""


@dataclass(frozen=True, slots=True)
class Relist:
    """The watch's resourceVersion expired (410 Gone): read the object again, nothing is lost."""


@dataclass(frozen=True, slots=True)
class Ignore:
    why: str


WatchAction = SpecObserved | ViewLost | ResourceDeleted | Relist | Ignore


def _generation(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def interpret_event(event_type: str, obj: Mapping[str, Any] | None) -> WatchAction:
    """What one watch event means for the engine. Anything it cannot read safely is a lost view."""
    obj = obj or {}
    if event_type in ("ADDED", "MODIFIED"):
        try:
            spec = parse_spec(obj.get("spec"))
        except (ValidationError, TypeError, ValueError) as exc:
            # The API server validated it, so this is drift between CRD and engine: fail closed.
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors() else str(exc)
            return ViewLost(f"unreadable TradingSystem spec: {first}")
        generation = _generation(obj)
        return SpecObserved(
            spec=spec,
            generation=generation,
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
            kill_switch=command_from_spec(
                spec.kill_switch, generation=generation, default_source=WATCH_SOURCE
            ),
        )
    if event_type == "DELETED":
        return ResourceDeleted()
    if event_type == "BOOKMARK":
        return Ignore("bookmark")
    if event_type == "ERROR":
        if obj.get("code") == 410:
            return Relist()
        return ViewLost(f"watch error: {obj.get('reason') or obj.get('message') or 'unknown'}")
    return Ignore(f"unknown event type {event_type!r}")


class KubeWatch:
    """Watches one TradingSystem and calls `on_action` (on the caller's event loop) for each change."""

    def __init__(
        self,
        namespace: str,
        name: str,
        on_action: Callable[[WatchAction], Awaitable[None]],
        *,
        api_client: Any | None = None,
        kubeconfig: str | None = None,
        watch_timeout_seconds: int = 60,
        max_backoff_seconds: float = 10.0,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.on_action = on_action
        self._api_client = api_client
        self._kubeconfig = kubeconfig
        self.watch_timeout_seconds = watch_timeout_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._stop = threading.Event()
        self._watch: Any | None = None
        self._thread: threading.Thread | None = None

    def _custom_objects_api(self) -> Any:
        from kubernetes import client, config  # only engines that watch pay for the import

        api_client = self._api_client
        if api_client is None:
            if self._kubeconfig:
                api_client = config.new_client_from_config(config_file=self._kubeconfig)
            else:
                configuration = client.Configuration()
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    config.load_kube_config(client_configuration=configuration)
                api_client = client.ApiClient(configuration)
            self._api_client = api_client
        return client.CustomObjectsApi(api_client)

    async def run(self) -> None:
        """Deliver actions until stop(); the blocking Kubernetes calls stay in a thread."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchAction] = asyncio.Queue()

        def emit(action: WatchAction) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, action)

        self._thread = threading.Thread(target=self._loop, args=(emit,), name="kube-watch", daemon=True)
        self._thread.start()
        while True:
            action = await queue.get()
            try:
                await self.on_action(action)
            except Exception:
                log.exception("handling a watch action failed", extra={"action": type(action).__name__})

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()

    def _loop(self, emit: Callable[[WatchAction], None]) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        backoff = 0.5
        view_lost = False
        while not self._stop.is_set():
            try:
                api = self._custom_objects_api()
                obj = api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
                action = interpret_event("ADDED", obj)
                emit(action)
                view_lost = isinstance(action, ViewLost)
                resource_version = (obj.get("metadata") or {}).get("resourceVersion")
                backoff = 0.5
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    field_selector=f"metadata.name={self.name}",
                    resource_version=resource_version,
                    timeout_seconds=self.watch_timeout_seconds,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        return
                    action = interpret_event(
                        event.get("type", ""), event.get("raw_object") or event.get("object")
                    )
                    if isinstance(action, Relist):
                        break
                    if not isinstance(action, Ignore):
                        emit(action)
                        view_lost = isinstance(action, ViewLost)
                # The server closed the watch (timeout): read the object again at once. Not a lost view.
                continue
            except ApiException as exc:
                if exc.status == 410:
                    continue
                reason = f"kubernetes API: HTTP {exc.status} {exc.reason}"
            except Exception as exc:
                reason = f"kubernetes API unreachable: {type(exc).__name__}"
            if self._stop.is_set():
                return
            if not view_lost:
                emit(ViewLost(reason))
                view_lost = True
            log.warning("lost the view of the TradingSystem; retrying", extra={"reason": reason})
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_seconds)
