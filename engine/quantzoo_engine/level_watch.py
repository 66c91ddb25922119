"""The engine watches every level that covers it besides its own TradingSystem (issue #13): the
TradingHalts (cluster-scoped: firm and desk) and its TradingAccount (when spec.accountRef names one).

One write to a TradingHalt or a TradingAccount reaches every covered engine through its own watch, not
only through the operator. Two parts, as kube_watch.py:
- `interpret_halt` / `interpret_account`: pure, from one object to the command for its holder's latch
  (None: the object does not cover this engine);
- `LevelWatch`: the shared resumable list+watch loop (`quantzoo_api.watching`) for one level, reporting
  `LevelObserved` for each change and `Proof`/`ViewLost` tagged with the level, so the engine's proof of
  state covers every level (proof.py).

A deleted TradingHalt or TradingAccount that was engaged leaves the engine held (only a release naming the
engagement lifts a latch; the chart's admission policy refuses deleting an engaged one).

Its account vanishing halts the engine (a running strategy's positions are the account's): an account with
`deletionTimestamp` (Terminating, while some finalizer keeps it), or a DELETED event, engages the account's
latch with the deletion as its engagement (`deletionTimestamp`). A re-created account (a GitOps replay)
does not lift it: only a release record naming that engagement does (`release.engagedAt` = the deletion
time, shown in the engine's /state heldBy). An account that is not there at all is never proven: the
engine does not trade without it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from quantzoo_api import GROUP, VERSION
from quantzoo_api.accounts import ACCOUNT_PLURAL, deletion_reason, parse_account_spec
from quantzoo_api.killswitch import KillSource, KillSwitchCommand, engagement_id, now_engagement
from quantzoo_api.levels import HALT_PLURAL, KillLevel, holder_of, parse_halt_spec
from quantzoo_api.watching import Backoff, ResumableWatch, WatchTimeouts

from quantzoo_engine.killswitch import command_from_spec
from quantzoo_engine.kube_watch import Proof, ViewLost, WatchAction, deliver_from_thread, generation_of

log = logging.getLogger(__name__)

HALTS_WATCH = "halts"
ACCOUNT_WATCH = "account"


@dataclass(frozen=True, slots=True)
class LevelObserved:
    """The current kill switch of level objects that cover the engine (a read or an event)."""

    watch: str
    commands: tuple[KillSwitchCommand, ...]


def _unreadable(level: KillLevel, holder: str, obj: Mapping[str, Any], why: str) -> KillSwitchCommand:
    """An object the API server accepted but the engine cannot read: fail closed, engaged by its holder
    (a later readable generation that is released lifts it)."""
    return KillSwitchCommand(
        engaged=True,
        reason=f"unreadable {level} kill switch: {why}"[:1024],
        source=KillSource.ENGINE_WATCH,
        generation=generation_of(obj),
        level=level,
        holder=holder,
    )


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        return str(exc.errors()[0]["msg"])
    return str(exc)


def interpret_halt(obj: Mapping[str, Any], namespace: str) -> KillSwitchCommand | None:
    """The command a TradingHalt stands for in an engine of `namespace`; None if it does not cover it."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    raw = obj.get("spec") or {}
    try:
        spec = parse_halt_spec(raw)
    except (ValidationError, TypeError, ValueError) as exc:
        scope = raw.get("scope") if isinstance(raw, Mapping) else None
        scope = scope if isinstance(scope, Mapping) else {}
        level = KillLevel.DESK if scope.get("level") == "Desk" else KillLevel.FIRM
        if level is KillLevel.DESK and scope.get("namespace") != namespace:
            return None
        return _unreadable(level, holder_of(level, name), obj, _first_error(exc))
    if not spec.scope.covers(namespace):
        return None
    level = spec.scope.level
    return command_from_spec(
        spec.kill_switch,
        generation=generation_of(obj),
        default_source=KillSource.ENGINE_WATCH,
        level=level,
        holder=holder_of(level, name),
    )


def account_deleted(obj: Mapping[str, Any], namespace: str) -> KillSwitchCommand:
    """The halt an account being deleted (or gone) stands for: engaged by its holder, the deletion its
    engagement, so only a release naming that deletion lifts it."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    deleting = meta.get("deletionTimestamp")
    return KillSwitchCommand(
        engaged=True,
        reason=deletion_reason(namespace, name, gone=not deleting),
        source=KillSource.ENGINE_WATCH,
        engagement=engagement_id(deleting) or now_engagement(),
        level=KillLevel.ACCOUNT,
        holder=holder_of(KillLevel.ACCOUNT, name, namespace),
    )


def interpret_account(obj: Mapping[str, Any], namespace: str) -> KillSwitchCommand:
    """The command a TradingAccount's kill switch stands for (the engine watches only its own account)."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return account_deleted(obj, namespace)
    name = str(meta.get("name") or "")
    holder = holder_of(KillLevel.ACCOUNT, name, namespace)
    try:
        spec = parse_account_spec(obj.get("spec"))
    except (ValidationError, TypeError, ValueError) as exc:
        return _unreadable(KillLevel.ACCOUNT, holder, obj, _first_error(exc))
    return command_from_spec(
        spec.kill_switch,
        generation=generation_of(obj),
        default_source=KillSource.ENGINE_WATCH,
        level=KillLevel.ACCOUNT,
        holder=holder,
    )


Interpret = Callable[[Mapping[str, Any]], KillSwitchCommand | None]


class _Emitter:
    """The watch loop's reports, as engine actions tagged with the level's watch."""

    def __init__(
        self,
        watch: str,
        interpret: Interpret,
        emit: Callable[[WatchAction], None],
        *,
        must_exist: bool,
        on_deleted: Interpret | None = None,
    ) -> None:
        self.watch, self.interpret, self.emit, self.must_exist = watch, interpret, emit, must_exist
        self.on_deleted = on_deleted
        self.present = False  # a must_exist object: seen and not deleted since

    def _missing(self) -> None:
        # The account the system names is not there: unknown, fail closed until it appears.
        self.emit(ViewLost(f"{self.watch}: not found", watch=self.watch))

    def listed(self, items: list[dict[str, Any]]) -> None:
        self.present = bool(items)
        if self.must_exist and not items:
            self._missing()
            return
        commands = tuple(c for c in map(self.interpret, items) if c is not None)
        self.emit(LevelObserved(self.watch, commands))

    def event(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type in ("ADDED", "MODIFIED"):
            self.present = True
            command = self.interpret(obj)
            self.emit(LevelObserved(self.watch, (command,) if command is not None else ()))
        elif self.must_exist and self.on_deleted is not None:
            # DELETED, the object the engine needs (its account): halt, whatever its switch said.
            self.present = False
            command = self.on_deleted(obj)
            self.emit(LevelObserved(self.watch, (command,) if command is not None else ()))
        else:
            # DELETED: the latch stays as it is (only a release lifts it); the view is still current.
            self.emit(Proof(watch=self.watch))

    def unchanged(self) -> None:
        if self.must_exist and not self.present:
            self._missing()  # a quiet watch of nothing proves nothing about the object needed
            return
        self.emit(Proof(watch=self.watch))

    def failed(self, reason: str) -> None:
        log.warning(
            "lost the view of a kill-switch level; retrying", extra={"level": self.watch, "reason": reason}
        )
        self.emit(ViewLost(reason, watch=self.watch))


class LevelWatch:
    """Watches one level (the TradingHalts, or one TradingAccount) and hands each action to `on_action`
    on the caller's event loop. Shares the API client of the engine's own watch."""

    def __init__(
        self,
        watch: str,
        api_client: Any,
        on_action: Callable[[WatchAction | LevelObserved], Awaitable[None]],
        interpret: Interpret,
        *,
        list_args: tuple[str, tuple[Any, ...]],
        must_exist: bool = False,
        on_deleted: Interpret | None = None,
        field_selector: str | None = None,
        timeouts: WatchTimeouts | None = None,
        max_backoff_seconds: float = 10.0,
    ) -> None:
        self.name = watch
        self._api_client = api_client
        self.on_action = on_action
        self.interpret = interpret
        self.list_args = list_args
        self.must_exist = must_exist
        self.on_deleted = on_deleted
        self.field_selector = field_selector
        self.timeouts = timeouts or WatchTimeouts()
        self.max_backoff_seconds = max_backoff_seconds
        self._watch: ResumableWatch | None = None
        self._stopped = False

    @classmethod
    def halts(cls, namespace: str, api_client: Any, on_action: Any, **kw: Any) -> LevelWatch:
        """Every TradingHalt (cluster-scoped list+watch); those covering `namespace` count."""
        return cls(
            HALTS_WATCH,
            api_client,
            on_action,
            lambda obj: interpret_halt(obj, namespace),
            list_args=("list_cluster_custom_object", (GROUP, VERSION, HALT_PLURAL)),
            **kw,
        )

    @classmethod
    def account(cls, namespace: str, name: str, api_client: Any, on_action: Any, **kw: Any) -> LevelWatch:
        """The TradingAccount `name` of `namespace` (it must exist: an engine fails closed without it)."""
        return cls(
            ACCOUNT_WATCH,
            api_client,
            on_action,
            lambda obj: interpret_account(obj, namespace),
            list_args=("list_namespaced_custom_object", (GROUP, VERSION, namespace, ACCOUNT_PLURAL)),
            must_exist=True,
            on_deleted=lambda obj: account_deleted(obj, namespace),
            field_selector=f"metadata.name={name}",
            **kw,
        )

    async def run(self) -> None:
        await deliver_from_thread(self._loop, self.on_action, thread_name=f"watch-{self.name}")

    def stop(self) -> None:
        self._stopped = True
        if self._watch is not None:
            self._watch.stop()

    def _loop(self, emit: Callable[[Any], None]) -> None:
        emitter = _Emitter(
            self.name, self.interpret, emit, must_exist=self.must_exist, on_deleted=self.on_deleted
        )
        try:
            from kubernetes import client

            api = client.CustomObjectsApi(self._api_client)
        except Exception as exc:
            emitter.failed(f"no Kubernetes client: {type(exc).__name__}")
            return
        method, args = self.list_args
        kwargs = {"field_selector": self.field_selector} if self.field_selector else {}
        self._watch = ResumableWatch(
            getattr(api, method),
            args,
            emitter,
            timeouts=self.timeouts,
            backoff=Backoff(maximum=self.max_backoff_seconds),
            **kwargs,
        )
        if self._stopped:
            return
        self._watch.run()
