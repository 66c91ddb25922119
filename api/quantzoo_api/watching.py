"""One resumable list+watch loop, with timeouts on both sides, for whoever watches the API server.

    watch = ResumableWatch(api.list_namespaced_custom_object, (GROUP, VERSION, ns, PLURAL), handler,
                           field_selector="metadata.name=demo")
    watch.run()            # blocking (run it in a thread); returns after stop()

What it does, as client-go's reflector does it:
- list (a read: `handler.listed`), then watch from the list's resourceVersion with bookmarks on;
- the API server ends each watch after `server_seconds` (timeoutSeconds); the loop resumes from the last
  resourceVersion it saw (an event's or a bookmark's), without a new list. A bookmark and that clean end
  both prove nothing changed (`handler.unchanged`), so a quiet object is proven every `server_seconds`;
- 410 Gone (the resourceVersion is too old): list again, nothing is lost;
- every request also has a CLIENT-side timeout: a watch that has not delivered a byte for
  `server_seconds + client_grace_seconds`, or a list that has not answered in `read_seconds`, is given up.
  Without it a partition that drops packets (no RST, no FIN) blocks the reader forever;
- any other failure: `handler.failed(reason)`, back off (`Backoff`, the one retry helper), list again;
- each event is decoded once: `kubernetes.watch.Watch` would, for a custom object (return type `object`),
  decode the line, encode the object again and decode that a second time. At a firm halt every watcher
  of N systems decodes N echoes of the status writes, on the same cores as the API server.

The `kubernetes` package is imported only by `run()`, so importing this module has no side effects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Backoff:
    """Exponential backoff: `next()` gives the delay before the next attempt, `reset()` after a success."""

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0
    _current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._current = (
            self.initial if self._current == 0.0 else min(self._current * self.factor, self.maximum)
        )
        return self._current

    def reset(self) -> None:
        self._current = 0.0


@dataclass(frozen=True, slots=True)
class WatchTimeouts:
    server_seconds: int = 10  # timeoutSeconds: the API server ends each watch (a bookmark comes first)
    client_grace_seconds: float = 5.0  # the client gives up a watch silent for server_seconds + this
    connect_seconds: float = 5.0
    read_seconds: float = 5.0  # a list that has not answered by then is given up

    @property
    def watch_request(self) -> tuple[float, float]:
        return (self.connect_seconds, self.server_seconds + self.client_grace_seconds)

    @property
    def list_request(self) -> tuple[float, float]:
        return (self.connect_seconds, self.read_seconds)


class WatchHandler(Protocol):
    """What the loop reports. Called from the loop's thread."""

    def listed(self, items: list[dict[str, Any]]) -> None:
        """A successful list: the full current state (proof of it)."""

    def event(self, event_type: str, obj: dict[str, Any]) -> None:
        """ADDED, MODIFIED or DELETED, with the raw object."""

    def unchanged(self) -> None:
        """Nothing changed up to now (proof): a bookmark, or the server ended the watch at its timeout
        after delivering every event (a clean end; a cut connection raises instead)."""

    def failed(self, reason: str) -> None:
        """The view is lost until the next `listed`."""


def _raw_watch() -> Any:
    """A `kubernetes.watch.Watch` that hands over the decoded event as it is (`raw_object` == `object`):
    no return type, so no re-encoding and second decoding; ERROR events (410) are handled as before."""
    from kubernetes import watch

    class RawWatch(watch.Watch):
        def get_return_type(self, func: Any) -> None:
            return None

    return RawWatch()


class ResumableWatch:
    def __init__(
        self,
        list_fn: Callable[..., Any],
        args: tuple[Any, ...],
        handler: WatchHandler,
        *,
        timeouts: WatchTimeouts | None = None,
        backoff: Backoff | None = None,
        **list_kwargs: Any,
    ) -> None:
        self.list_fn = list_fn
        self.args = args
        self.handler = handler
        self.timeouts = timeouts or WatchTimeouts()
        self.backoff = backoff or Backoff()
        self.list_kwargs = list_kwargs
        self._stop = threading.Event()
        self._watch: Any | None = None

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _list(self) -> str | None:
        raw = self.list_fn(*self.args, _request_timeout=self.timeouts.list_request, **self.list_kwargs)
        items = list(raw.get("items") or [])
        self.handler.listed(items)
        return (raw.get("metadata") or {}).get("resourceVersion")

    def _watch_from(self, resource_version: str | None) -> str | None:
        """Watch until the server ends it; returns the resourceVersion to resume from."""
        self._watch = w = _raw_watch()
        for event in w.stream(
            self.list_fn,
            *self.args,
            resource_version=resource_version,
            timeout_seconds=self.timeouts.server_seconds,
            allow_watch_bookmarks=True,
            _request_timeout=self.timeouts.watch_request,
            **self.list_kwargs,
        ):
            if self._stop.is_set():
                break
            obj = event.get("raw_object") or event.get("object") or {}
            # Our own record of where we are: Watch does not track it for untyped (custom) objects.
            resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
            if event.get("type") == "BOOKMARK":
                self.handler.unchanged()
            else:
                self.handler.event(event.get("type", ""), obj)
            self.backoff.reset()
        else:
            if not self._stop.is_set():
                self.handler.unchanged()
        return resource_version

    def run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    self.backoff.reset()
                    if self._stop.is_set():  # stopped by the handler (its consumer went away)
                        return
                resource_version = self._watch_from(resource_version)
                continue
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None  # too old: list again at once
                    continue
                reason = f"kubernetes API: HTTP {exc.status} {exc.reason}"
            except Exception as exc:
                reason = f"kubernetes API unreachable: {type(exc).__name__}"
            if self._stop.is_set():
                return
            resource_version = None
            self.handler.failed(reason)
            self._stop.wait(self.backoff.next())
