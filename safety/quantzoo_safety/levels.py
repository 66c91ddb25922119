"""The kill switch above one system (issue #13): a TradingAccount's, a desk's and the firm's, for the
kubectl plugin (`kubectl quantzoo kill --account A | --namespace N | --firm`, and `release` likewise).

Same contract as a system's (quantzoo_safety.engagement, quantzoo_api.killswitch): an engage is never
refused (who/why defaulted, an engaged switch only escalates), a release names the engagement it ends.
A desk or the firm is a cluster-scoped TradingHalt named by our clients (`firm`, `desk-<namespace>`),
created on first use; an account is the TradingAccount itself (not created: it holds the broker).

The safety API of one system does not engage these: its token is that system's, and a desk, account or
firm stop is the act of people holding the chart's -killer ClusterRole (docs/RUNBOOK.md says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from quantzoo_api import GROUP, VERSION
from quantzoo_api.accounts import ACCOUNT_PLURAL
from quantzoo_api.levels import HALT_PLURAL, KillLevel, halt_body, halt_name_for

from quantzoo_safety.engagement import EngageIntent, NotEngaged, kill_switch_of, plan_engage, plan_release
from quantzoo_safety.kube import (
    MERGE_PATCH,
    KubeCalls,
    KubeConflict,
    KubeError,
    KubeRefused,
    TradingSystemNotFound,
    read_build_patch,
)


@dataclass(frozen=True)
class LevelTarget:
    level: KillLevel
    name: str
    namespace: str | None = None  # an account's

    @classmethod
    def firm(cls) -> LevelTarget:
        return cls(KillLevel.FIRM, halt_name_for(KillLevel.FIRM))

    @classmethod
    def desk(cls, namespace: str) -> LevelTarget:
        return cls(KillLevel.DESK, halt_name_for(KillLevel.DESK, namespace), namespace)

    @classmethod
    def account(cls, namespace: str, name: str) -> LevelTarget:
        return cls(KillLevel.ACCOUNT, name, namespace)

    @property
    def is_halt(self) -> bool:
        return self.level in (KillLevel.FIRM, KillLevel.DESK)

    def __str__(self) -> str:
        if self.is_halt:
            return f"tradinghalt {self.name} ({self.level}{f' {self.namespace}' if self.namespace else ''})"
        return f"tradingaccount {self.namespace}/{self.name}"


class LevelObjects(KubeCalls):
    """Synchronous access to the level objects (TradingHalt, TradingAccount)."""

    def get(self, t: LevelTarget) -> dict[str, Any]:
        if t.is_halt:
            return self._call(
                f"get {t}", self._api.get_cluster_custom_object, GROUP, VERSION, HALT_PLURAL, t.name
            )
        return self._call(
            f"get {t}",
            self._api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            t.namespace,
            ACCOUNT_PLURAL,
            t.name,
        )

    def create_halt(self, t: LevelTarget) -> dict[str, Any]:
        body = halt_body(t.level, t.namespace)
        return self._call(
            f"create {t}",
            self._api.create_cluster_custom_object,
            GROUP,
            VERSION,
            HALT_PLURAL,
            body,
            field_manager=self.field_manager,
        )

    def merge_patch(
        self, t: LevelTarget, patch: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        body = dict(patch)
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        kwargs = {"field_manager": self.field_manager, "_content_type": MERGE_PATCH}
        if t.is_halt:
            return self._call(
                f"patch {t}",
                self._api.patch_cluster_custom_object,
                GROUP,
                VERSION,
                HALT_PLURAL,
                t.name,
                body,
                **kwargs,
            )
        return self._call(
            f"patch {t}",
            self._api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            t.namespace,
            ACCOUNT_PLURAL,
            t.name,
            body,
            **kwargs,
        )


def _read_or_create(objects: LevelObjects, t: LevelTarget) -> dict[str, Any]:
    try:
        return objects.get(t)
    except TradingSystemNotFound:
        if not t.is_halt:
            raise
    try:
        return objects.create_halt(t)
    except KubeConflict:  # created meanwhile by someone else: theirs is as good
        return objects.get(t)


def _patch(
    objects: LevelObjects,
    t: LevelTarget,
    build: Callable[[dict[str, Any]], dict[str, Any] | None],
    *,
    create: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read (creating a halt on first use), build the patch from what is there, patch with a
    resourceVersion precondition; retry on 409."""
    return read_build_patch(
        lambda: _read_or_create(objects, t) if create else objects.get(t),
        lambda body, rv: objects.merge_patch(t, body, rv),
        build,
    )


def engage(objects: LevelObjects, t: LevelTarget, intent: EngageIntent, out: TextIO) -> None:
    plans: list[Any] = []

    def build(obj: dict[str, Any]) -> dict[str, Any] | None:
        plans[:] = [plan_engage(kill_switch_of(obj), intent)]
        return plans[0].patch

    obj, _ = _patch(objects, t, build, create=True)
    ks = kill_switch_of(obj)
    if not plans[0].already_engaged:
        extra = ", closing positions" if intent.close_positions else ""
        print(f"{t}: kill switch ENGAGED ({ks.get('mode', intent.mode)}{extra})", file=out)
        return
    print(
        f"{t}: already engaged by {ks.get('operator') or '?'} ({ks.get('reason') or 'no reason'})", file=out
    )
    if plans[0].escalations:
        print(f"{t}: escalated {', '.join(plans[0].escalations)}", file=out)


def release(objects: LevelObjects, t: LevelTarget, *, operator: str, reason: str, out: TextIO) -> None:
    def build(obj: dict[str, Any]) -> dict[str, Any]:
        return plan_release(kill_switch_of(obj), operator=operator, reason=reason)

    _patch(objects, t, build, create=False)
    print(f"{t}: kill switch released by {operator} ({reason})", file=out)


def act(
    objects: LevelObjects, t: LevelTarget, command: str, intent: EngageIntent, out: TextIO, err: TextIO
) -> int:
    """The plugin's kill/release of one level: 0 done, 1 not done (the reason printed to `err`)."""
    try:
        if command == "kill":
            engage(objects, t, intent, out)
        else:
            release(objects, t, operator=intent.operator, reason=intent.reason, out=out)
    except NotEngaged:
        print(f"{t}: kill switch is not engaged; nothing to release", file=err)
        return 1
    except TradingSystemNotFound:
        print(f"error: {t} not found", file=err)
        return 1
    except KubeRefused as exc:
        word = "forbidden" if exc.status in (401, 403) else "the API server refused the change"
        print(f"error: {word} ({t}): {exc.message}", file=err)
        return 1
    except KubeError as exc:
        print(f"error: {exc}", file=err)
        return 1
    return 0
