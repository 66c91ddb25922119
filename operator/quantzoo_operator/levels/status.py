"""The operator's levels component: watches the TradingHalts, TradingAccounts and TradingSystems (the
shared resumable loop, quantzoo_api.watching, one thread each), keeps a `LevelIndex`, and writes what
changed: each covered system's status.killSwitch.heldBy, Halted condition and the phase they give it
(one write per system: the reconcile writer, computing the same phase, then has nothing to write), and each
TradingHalt's status.systems/halted. Server-side apply with its own field manager, so it never touches the
fields of the kill-switch propagator, nor the conditions of reconcile; a system's write carries the
resourceVersion its phase was computed from as a precondition. Writes go out concurrently (the Kube
pool), coalesced: a burst of events is one pass over the systems it touched.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from quantzoo_api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from quantzoo_api.accounts import ACCOUNT_KIND, ACCOUNT_PLURAL
from quantzoo_api.levels import HALT_KIND, HALT_PLURAL
from quantzoo_api.watching import ResumableWatch, WatchTimeouts

from quantzoo_operator.kube import APPLY_PATCH, Kube, KubeError
from quantzoo_operator.levels.holds import (
    LevelIndex,
    SysKey,
    halted_condition,
    held_by_json,
    never_held,
    wanted,
)
from quantzoo_operator.status import now_iso

log = logging.getLogger(__name__)

FIELD_MANAGER = "quantzoo-operator-levels"
Event = tuple[str, str, dict[str, Any]]  # (kind, event type or LISTED, object or {"items": [...]})


class _Relay:
    """A watch loop's reports onto the component's queue (from the loop's thread)."""

    def __init__(self, kind: str, put: Callable[[Event], None]) -> None:
        self.kind, self.put = kind, put

    def listed(self, items: list[dict[str, Any]]) -> None:
        self.put((self.kind, "LISTED", {"items": items}))

    def event(self, event_type: str, obj: dict[str, Any]) -> None:
        self.put((self.kind, event_type, obj))

    def unchanged(self) -> None:
        pass

    def failed(self, reason: str) -> None:
        log.warning("levels: lost a watch; re-listing", extra={"kind": self.kind, "reason": reason})


class LevelStatus:
    def __init__(
        self,
        kube: Kube,
        api_factory: Callable[[], Any],
        namespaces: tuple[str, ...] = (),
        timeouts: WatchTimeouts | None = None,
    ) -> None:
        self.kube = kube
        self.api_factory = api_factory
        self.namespaces = namespaces
        self.timeouts = timeouts or WatchTimeouts(server_seconds=60)
        self.index = LevelIndex()
        self._watches: list[ResumableWatch] = []
        self._task: asyncio.Task[None] | None = None
        self._levels_dirty: set[str] = set()  # TradingHalts whose status.systems/halted may have changed

    # -- watches ---------------------------------------------------------------------------------------
    def _start_watches(self, put: Callable[[Event], None]) -> None:
        from kubernetes import client

        api = client.CustomObjectsApi(self.api_factory())
        specs: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
            (HALT_KIND, api.list_cluster_custom_object, (GROUP, VERSION, HALT_PLURAL))
        ]
        for kind, plural in ((ACCOUNT_KIND, ACCOUNT_PLURAL), (KIND, PLURAL)):
            if self.namespaces:
                for ns in self.namespaces:
                    specs.append((kind, api.list_namespaced_custom_object, (GROUP, VERSION, ns, plural)))
            else:
                specs.append((kind, api.list_cluster_custom_object, (GROUP, VERSION, plural)))
        for kind, fn, args in specs:
            watch = ResumableWatch(fn, args, _Relay(kind, put), timeouts=self.timeouts)
            self._watches.append(watch)
            threading.Thread(target=watch.run, name=f"levels-{kind}", daemon=True).start()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="levels-status")

    async def stop(self) -> None:
        for watch in self._watches:
            watch.stop()
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._start_watches(lambda e: loop.call_soon_threadsafe(queue.put_nowait, e))
        while True:
            dirty: set[SysKey] = set()
            dirty |= self.apply(await queue.get())
            started, events = time.monotonic(), 1
            while not queue.empty():  # coalesce a burst into one pass
                dirty |= self.apply(queue.get_nowait())
                events += 1
            try:
                writes = await self.flush(dirty)
            except Exception:
                log.exception("levels: status writes failed")
                continue
            if writes:  # where a halt's time goes (bench/one_write_kill.py reads these lines)
                ms = round((time.monotonic() - started) * 1000)
                log.info("levels: status pass", extra={"events": events, "writes": writes, "ms": ms})

    # -- index -----------------------------------------------------------------------------------------
    def apply(self, event: Event) -> set[SysKey]:
        kind, event_type, obj = event
        idx = self.index
        if event_type == "LISTED":
            items = obj["items"]
            if kind == HALT_KIND:
                idx.halts.clear()
                keys = [k for item in items for k in idx.put_halt(item)]
            elif kind == ACCOUNT_KIND:
                keys = [k for item in items for k in idx.put_account(item)]
            else:
                keys = [k for item in items for k in idx.put_system(item)]
                keys += [k for name in idx.halts for k in idx.covered_by_halt(name)]
            for item in items:
                self._level_dirty(kind, item)
            if kind == KIND:
                self._all_levels_dirty()
            return set(keys)
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        deleted = event_type == "DELETED"
        if kind == HALT_KIND:
            keys = idx.drop_halt(name) if deleted else idx.put_halt(obj)
        elif kind == ACCOUNT_KIND:
            keys = idx.drop_account(ns, name) if deleted else idx.put_account(obj)
        else:
            before = idx.systems.get((ns, name))
            if deleted:
                idx.drop_system(ns, name)
                keys = []
            else:
                keys = idx.put_system(obj)
            if before is None or deleted:
                self._all_levels_dirty()  # a halt's count of systems changed
        if not deleted:
            self._level_dirty(kind, obj)
        return set(keys)

    def _level_dirty(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == HALT_KIND:
            self._levels_dirty.add(str((obj.get("metadata") or {}).get("name") or ""))

    def _all_levels_dirty(self) -> None:
        self._levels_dirty |= set(self.index.halts)

    # -- writes ----------------------------------------------------------------------------------------
    async def flush(self, dirty: set[SysKey]) -> int:
        """Write what changed; how many writes went out."""
        writes = [self._write_system(key) for key in dirty if key in self.index.systems]
        levels, self._levels_dirty = self._levels_dirty, set()
        writes += [self._write_halt(name) for name in levels]
        sent = 0
        for result in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(result, KubeError) and result.status in (404, 409):
                continue  # gone, or a newer version: its watch event brings the write again
            if isinstance(result, Exception):
                log.warning("levels: a status write failed", extra={"error": str(result)})
            elif result is True:
                sent += 1
        return sent

    async def _write_system(self, key: SysKey) -> bool:
        system = self.index.systems[key]
        holds = self.index.held_by(key)
        if never_held(system, holds):
            return False
        want = wanted(holds, system.facts)
        if want == system.shown:
            return False
        since = system.halted_since if want[1] == system.shown[1] and system.halted_since else now_iso()
        metadata: dict[str, Any] = {"name": key[1], "namespace": key[0]}
        if system.resource_version is not None:
            # The phase is computed from this version: a newer one (409) comes on the watch, and with it
            # the write again.
            metadata["resourceVersion"] = system.resource_version
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "status": {
                "phase": want[3],
                "killSwitch": {"heldBy": held_by_json(holds)},
                "conditions": [halted_condition(holds, system.generation, since)],
            },
        }
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{key[0]}/{PLURAL}/{key[1]}/status"
        written = await self._apply(path, body)
        # The version this write made (no event of this system is applied while a pass runs, so none newer
        # is in the index): a next write's precondition before the watch echoes it.
        self.index.put_system(written)
        return True

    async def _write_halt(self, name: str) -> bool:
        """status.systems (covered) and status.halted (held now) of a TradingHalt. (A TradingAccount's
        status.systems is the accounts work's: the systems that trade in it.)"""
        if name not in self.index.halts:
            return False
        systems, halted = self.index.halt_counts(name)
        body = {
            "apiVersion": API_VERSION,
            "kind": HALT_KIND,
            "metadata": {"name": name},
            "status": {"systems": systems, "halted": halted},
        }
        await self._apply(f"/apis/{GROUP}/{VERSION}/{HALT_PLURAL}/{name}/status", body)
        return True

    async def _apply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.run(
            self.kube.request,
            "PATCH",
            path,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=body,
            content_type=APPLY_PATCH,
        )
