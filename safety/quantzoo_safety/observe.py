"""Reading the world: the engine's `GET /state` and the TradingSystem object, each with its own deadline,
as small immutable views. Every read updates the `engine_up` / `apiserver_up` gauges."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from quantzoo_api.engine_client import EngineUnreachable, get_state
from quantzoo_api.killswitch import KillSwitchAck

from quantzoo_safety.engagement import kill_switch_of
from quantzoo_safety.kube import ApiServerUnreachable, KubeError, TradingSystemClient, TradingSystemNotFound
from quantzoo_safety.metrics import SafetyMetrics


@dataclass(frozen=True)
class EngineView:
    reachable: bool
    state: dict[str, Any] | None = None
    error: str | None = None

    @property
    def kill_switch(self) -> dict[str, Any]:
        ks = (self.state or {}).get("kill_switch")
        return ks if isinstance(ks, dict) else {}

    @property
    def engaged(self) -> bool | None:
        """The engine's own view of the switch; None when unknown."""
        if not self.reachable or "engaged" not in self.kill_switch:
            return None
        return bool(self.kill_switch["engaged"])

    @property
    def trading_state(self) -> str | None:
        return (self.state or {}).get("trading_state") if self.reachable else None


@dataclass(frozen=True)
class ClusterView:
    enabled: bool
    reachable: bool | None = None  # None: Kubernetes disabled (standalone)
    obj: dict[str, Any] | None = None
    error: str | None = None
    found: bool = field(default=False)

    @property
    def spec_kill_switch(self) -> dict[str, Any]:
        return kill_switch_of(self.obj)

    @property
    def status(self) -> dict[str, Any]:
        return (self.obj or {}).get("status") or {}

    @property
    def status_kill_switch(self) -> dict[str, Any]:
        return self.status.get("killSwitch") or {}

    @property
    def spec_engaged(self) -> bool | None:
        return bool(self.spec_kill_switch.get("engaged")) if self.found else None

    @property
    def status_engaged(self) -> bool | None:
        ks = self.status_kill_switch
        return bool(ks["engaged"]) if "engaged" in ks else None

    @property
    def spec(self) -> dict[str, Any] | None:
        return (self.obj or {}).get("spec") if self.found else None


class Observer:
    def __init__(
        self,
        *,
        engine_url: str,
        http: httpx.AsyncClient,
        kube: TradingSystemClient | None,
        metrics: SafetyMetrics,
        engine_timeout: float = 2.0,
    ) -> None:
        self.engine_url = engine_url
        self.http = http
        self.kube = kube
        self.metrics = metrics
        self.engine_timeout = engine_timeout
        self.last_engine: EngineView | None = None
        self.last_cluster: ClusterView | None = None

    async def engine(self) -> EngineView:
        try:
            state = await get_state(self.http, self.engine_url, timeout=self.engine_timeout)
            view = (
                EngineView(True, state)
                if isinstance(state, dict)
                else EngineView(False, None, "engine /state answered something that is not a JSON object")
            )
        except EngineUnreachable as exc:
            view = EngineView(False, None, f"engine unreachable: {exc}")
        except ValueError:
            view = EngineView(False, None, "engine /state answered invalid JSON")
        self.metrics.engine_up.set(1 if view.reachable else 0)
        if self.kube is None and view.engaged is not None:  # standalone: the engine is the only view
            self.metrics.kill_switch_engaged.set(1 if view.engaged else 0)
        self.last_engine = view
        return view

    async def cluster(self) -> ClusterView:
        if self.kube is None:
            view = ClusterView(enabled=False)
        else:
            try:
                obj = await self.kube.get()
                view = ClusterView(True, True, obj, None, found=True)
            except TradingSystemNotFound as exc:
                view = ClusterView(True, True, None, str(exc))
            except KubeError as exc:
                # A refusal (403) is an answer: the API server is up; the object is not readable.
                reachable = not isinstance(exc, ApiServerUnreachable)
                view = ClusterView(True, reachable, None, str(exc))
            self.metrics.apiserver_up.set(1 if view.reachable else 0)
            if view.found:
                self.metrics.kill_switch_engaged.set(1 if view.spec_engaged else 0)
        self.last_cluster = view
        return view

    def note(self, obj: dict[str, Any]) -> None:
        """The TradingSystem as a patch returned it: the snapshot shows our own change at once."""
        self.last_cluster = ClusterView(True, True, obj, None, found=True)

    def note_ack(self, ack: KillSwitchAck) -> None:
        """The engine's acknowledgement of our push: the snapshot shows its new trading state at once."""
        state = dict(self.last_engine.state or {}) if self.last_engine and self.last_engine.reachable else {}
        state["trading_state"] = str(ack.trading_state)
        state["kill_switch"] = {**(state.get("kill_switch") or {}), "engaged": ack.engaged}
        self.last_engine = EngineView(True, state)

    def snapshot(self) -> tuple[EngineView, ClusterView]:
        """The last views the watchdog's loop read (no I/O); "unknown" before its first check."""
        engine = self.last_engine or EngineView(False, None, "not observed yet")
        cluster = self.last_cluster or ClusterView(enabled=self.kube is not None, reachable=None)
        return engine, cluster

    async def both(self) -> tuple[EngineView, ClusterView]:
        engine, cluster = await asyncio.gather(self.engine(), self.cluster())
        return engine, cluster
