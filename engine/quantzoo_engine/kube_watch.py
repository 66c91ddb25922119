"""The engine watches its own TradingSystem, so a kill reaches it even when the operator is down.

Two parts:
- `interpret_event`: pure function from one watch event (type + object) to what the engine should do.
- `KubeWatch`: runs the shared resumable list+watch loop (`quantzoo_api.watching`, client-side timeouts
  included) in a daemon thread and hands each action to a callback on the engine's event loop. Every
  read, event and bookmark is also proof of the switch's state (`Proof`); a failure is `ViewLost` (the
  engine goes HALTED until it has read the state again: design.md, kill-switch contract point 4).

The `kubernetes` package is imported only when a KubeWatch actually runs.
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
from quantzoo_api.deletion import deletion_command, is_being_deleted
from quantzoo_api.killswitch import KillSource, KillSwitchCommand
from quantzoo_api.types import TradingSystemSpec, parse_spec
from quantzoo_api.watching import Backoff, ResumableWatch, WatchTimeouts

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
    watch: str | None = None  # another level's watch (level_watch.py); None: the own TradingSystem's


@dataclass(frozen=True, slots=True)
class ResourceDeleted:
    """The TradingSystem is gone (its finalizer already halted and flattened): stay halted."""


@dataclass(frozen=True, slots=True)
class Relist:
    """The watch's resourceVersion expired (410 Gone): read the object again, nothing is lost."""


@dataclass(frozen=True, slots=True)
class Proof:
    """Nothing changed (a bookmark, or a watch the server ended cleanly): the engine's view is current."""

    watch: str | None = None  # another level's watch (level_watch.py); None: the own TradingSystem's


@dataclass(frozen=True, slots=True)
class Ignore:
    why: str


WatchAction = SpecObserved | ViewLost | ResourceDeleted | Relist | Proof | Ignore


def generation_of(obj: Mapping[str, Any]) -> int | None:
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
        generation = generation_of(obj)
        if is_being_deleted(obj):
            # The deletion is a halt (flattening when asked), applied here too: a foreground deletion has the
            # garbage collector delete this pod while the operator's finalizer may not have reached it yet.
            kill_switch = deletion_command(obj, source=KillSource.ENGINE_WATCH)
        else:
            kill_switch = command_from_spec(
                spec.kill_switch, generation=generation, default_source=WATCH_SOURCE
            )
        return SpecObserved(
            spec=spec,
            generation=generation,
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
            kill_switch=kill_switch,
        )
    if event_type == "DELETED":
        return ResourceDeleted()
    if event_type == "BOOKMARK":
        return Proof()
    if event_type == "ERROR":
        if obj.get("code") == 410:
            return Relist()
        return ViewLost(f"watch error: {obj.get('reason') or obj.get('message') or 'unknown'}")
    return Ignore(f"unknown event type {event_type!r}")


def deletion_observed(obj: Mapping[str, Any] | None) -> SpecObserved | None:
    """The halt of a TradingSystem found being deleted by a one-off read (None when it is not)."""
    if obj is None or not is_being_deleted(obj):
        return None
    action = interpret_event("MODIFIED", obj)
    return action if isinstance(action, SpecObserved) else None


class _Emitter:
    """The watch loop's reports, as engine actions."""

    def __init__(self, emit: Callable[[WatchAction], None]) -> None:
        self.emit = emit

    def listed(self, items: list[dict[str, Any]]) -> None:
        if not items:
            # Not (yet) there, or not visible: the state is unknown, fail closed until it appears.
            self.emit(ViewLost("TradingSystem not found"))
            return
        self.emit(interpret_event("ADDED", items[0]))

    def event(self, event_type: str, obj: dict[str, Any]) -> None:
        action = interpret_event(event_type, obj)
        if not isinstance(action, Ignore | Relist):
            self.emit(action)

    def unchanged(self) -> None:
        self.emit(Proof())

    def failed(self, reason: str) -> None:
        log.warning("lost the view of the TradingSystem; retrying", extra={"reason": reason})
        self.emit(ViewLost(reason))


async def deliver_from_thread(
    loop_fn: Callable[[Callable[[Any], None]], None],
    on_action: Callable[[Any], Awaitable[None]],
    *,
    thread_name: str,
) -> None:
    """Run `loop_fn(emit)` (blocking Kubernetes calls) in a daemon thread and hand each emitted action to
    `on_action` on this event loop, in order, forever; a failing handler is logged, not fatal."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def emit(action: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, action)

    threading.Thread(target=loop_fn, args=(emit,), name=thread_name, daemon=True).start()
    while True:
        action = await queue.get()
        try:
            await on_action(action)
        except Exception:
            what = {"watch": thread_name, "action": type(action).__name__}
            log.exception("handling a watch action failed", extra=what)


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
        timeouts: WatchTimeouts | None = None,
        max_backoff_seconds: float = 10.0,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.on_action = on_action
        self._api_client = api_client
        self._kubeconfig = kubeconfig
        self.timeouts = timeouts or WatchTimeouts()
        self.max_backoff_seconds = max_backoff_seconds
        self._watch: ResumableWatch | None = None
        self._stopped = False

    def _custom_objects_api(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client())

    def api_client(self) -> Any:
        """The Kubernetes API client (shared with the trading Lease)."""
        from kubernetes import client, config  # only engines that watch pay for the import

        if self._api_client is None:
            if self._kubeconfig:
                self._api_client = config.new_client_from_config(config_file=self._kubeconfig)
            else:
                configuration = client.Configuration()
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    config.load_kube_config(client_configuration=configuration)
                self._api_client = client.ApiClient(configuration)
        return self._api_client

    async def run(self) -> None:
        """Deliver actions until stop(); the blocking Kubernetes calls stay in a thread."""
        await deliver_from_thread(self._loop, self.on_action, thread_name="kube-watch")

    def stop(self) -> None:
        self._stopped = True
        if self._watch is not None:
            self._watch.stop()

    def read_now(self, timeout_seconds: float) -> dict[str, Any] | None:
        """One GET of the TradingSystem, outside the watch (blocking; None if it cannot be read in time)."""
        try:
            return self._custom_objects_api().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=timeout_seconds
            )
        except Exception as exc:  # any failure means "not known"; the caller carries on without it
            log.warning("could not read the TradingSystem", extra={"error": type(exc).__name__})
            return None

    def _loop(self, emit: Callable[[WatchAction], None]) -> None:
        emitter = _Emitter(emit)
        try:
            api = self._custom_objects_api()
        except Exception as exc:
            emitter.failed(f"no Kubernetes client: {type(exc).__name__}")
            return
        self._watch = ResumableWatch(
            api.list_namespaced_custom_object,
            (GROUP, VERSION, self.namespace, PLURAL),
            emitter,
            timeouts=self.timeouts,
            backoff=Backoff(maximum=self.max_backoff_seconds),
            field_selector=f"metadata.name={self.name}",
        )
        if self._stopped:
            return
        self._watch.run()
