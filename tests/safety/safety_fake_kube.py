"""STAND-IN for the TradingSystem on an API server, for fast unit tests of the safety service.

Same interface as `quantzoo_safety.kube.TradingSystemClient` (get, merge_patch_spec, read_status),
with JSON merge patch semantics, resourceVersion preconditions and the CRD's kill-switch CEL rules
emulated (release names its engagement; nothing but a release weakens). test_safety_cluster.py runs
the same behaviour against a real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from quantzoo_safety.kube import ApiServerUnreachable, KubeConflict, KubeRefused, TradingSystemNotFound

CEL_MESSAGE = (
    "an engaged kill switch is released only with a release record naming the engagement it ends: set "
    "spec.killSwitch.release.operator, .reason (who and why) and .engagedAt = spec.killSwitch.engagedAt"
)
WEAKEN_MESSAGE = (
    "only a release weakens an engaged kill switch: mode Halt cannot become ReduceOnly and closePositions "
    "cannot become false while it is engaged"
)


def release_refused(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The CRD's release rule: a release names the engagement it ends (or, without one, is a new record)."""
    if not old.get("engaged") or new.get("engaged"):
        return False
    release = new.get("release")
    if not release:
        return True
    if old.get("engagedAt"):
        return release.get("engagedAt") != old["engagedAt"]
    return release == old.get("release")


def weakening(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The CRD's rule that nothing but a release weakens an engaged switch."""
    if not (old.get("engaged") and new.get("engaged")):
        return False
    halt_lost = old.get("mode", "Halt") == "Halt" and new.get("mode", "Halt") != "Halt"
    return halt_lost or (bool(old.get("closePositions")) and not new.get("closePositions"))


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def new_tradingsystem(namespace: str = "trading", name: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1", "generation": 1},
        "spec": {"mode": "paper", "killSwitch": {"engaged": False, "mode": "Halt", "closePositions": False}},
    }


class FakeTradingSystemClient:
    def __init__(self, namespace: str = "trading", name: str = "demo") -> None:
        self.namespace, self.name = namespace, name
        self.obj: dict[str, Any] | None = new_tradingsystem(namespace, name)
        self.unreachable = False
        self.forbidden = False
        self.delay = 0.0
        self.patches: list[dict[str, Any]] = []
        self.conflicts = 0
        self.pods: list[dict[str, Any]] = []  # the engine pods `list_engine_pods` returns

    async def _io(self) -> None:
        await asyncio.sleep(self.delay)
        if self.unreachable:
            raise ApiServerUnreachable("API server unreachable on get tradingsystem: ConnectionRefusedError")
        if self.forbidden:
            raise KubeRefused(403, "tradingsystems.trading.quantzoo.io is forbidden: User cannot patch")
        if self.obj is None:
            raise TradingSystemNotFound(f"get tradingsystem {self.namespace}/{self.name}: not found")

    async def get(self) -> dict[str, Any]:
        await self._io()
        return copy.deepcopy(self.obj)

    async def read_status(self) -> dict[str, Any]:
        return (await self.get()).get("status") or {}

    async def list_engine_pods(self) -> list[dict[str, Any]]:
        await asyncio.sleep(self.delay)
        if self.unreachable:
            raise ApiServerUnreachable("API server unreachable on list pods: ConnectionRefusedError")
        return copy.deepcopy(self.pods)

    async def merge_patch_spec(self, patch: dict[str, Any], *, resource_version: str | None = None) -> dict:
        await self._io()
        assert self.obj is not None
        meta = self.obj["metadata"]
        if resource_version is not None and resource_version != meta["resourceVersion"]:
            self.conflicts += 1
            raise KubeConflict(409, "the object has been modified; apply your changes to the latest version")
        old = self.obj["spec"].get("killSwitch", {})
        new_spec = merge(self.obj["spec"], patch["spec"])
        new = new_spec.get("killSwitch", {})
        invalid = f"TradingSystem.trading.quantzoo.io {self.name!r} is invalid: "
        if release_refused(old, new):
            raise KubeRefused(422, invalid + CEL_MESSAGE)
        if weakening(old, new):
            raise KubeRefused(422, invalid + WEAKEN_MESSAGE)
        self.patches.append(copy.deepcopy(patch))
        self.obj["spec"] = new_spec
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        meta["generation"] += 1
        return copy.deepcopy(self.obj)

    def close(self) -> None:
        pass


class FakeTradingSystems:
    """STAND-IN for `quantzoo_safety.kube.TradingSystems` (synchronous, many objects), for the kubectl
    plugin's unit tests. Same merge-patch, precondition and CEL behaviour as above."""

    field_manager = "kubectl-quantzoo"

    def __init__(self, namespace: str = "trading", names: tuple[str, ...] = ("demo",)) -> None:
        self.clients = {(namespace, n): FakeTradingSystemClient(namespace, n) for n in names}
        self.error: Exception | None = None
        self.calls: list[tuple[str, str, str, dict[str, Any] | None, str | None]] = []

    def _client(self, namespace: str, name: str) -> FakeTradingSystemClient:
        if self.error is not None:
            raise self.error
        if (namespace, name) not in self.clients:
            raise TradingSystemNotFound(f"get tradingsystem {namespace}/{name}: not found")
        return self.clients[(namespace, name)]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("get", namespace, name, None, None))
        return asyncio.run(self._client(namespace, name).get())

    def list(self, namespace: str) -> list[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        return [copy.deepcopy(c.obj) for (ns, _), c in sorted(self.clients.items()) if ns == namespace]

    def merge_patch(
        self, namespace: str, name: str, patch: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("patch", namespace, name, patch, resource_version))
        client = self._client(namespace, name)
        return asyncio.run(client.merge_patch_spec(patch, resource_version=resource_version))
