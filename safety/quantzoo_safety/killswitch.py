"""Activate and deactivate: the safety service's two state changes, used by the API and the watchdog.

Activate (both paths at once, so the faster one stops trading), after one bounded read of the
TradingSystem, so neither path sends anything weaker than what is engaged (issue #15, finding 5):
  0. read `spec.killSwitch` (at most READ_DEADLINE_SECONDS); the engine gets the stronger of current and
     asked, and the engagement: the current engagedAt while engaged, else a fresh one that step 1 writes;
  1. merge-patch `spec.killSwitch` of the TradingSystem (the one source of truth), with a resourceVersion
     precondition so concurrent activations leave the FIRST who/why in place ("already engaged");
  2. push the halt straight to the admin endpoint of every live engine pod, by pod IP, Ready or not (a
     wedged or partitioned engine fails its readiness probe, leaves the Service's endpoints and may still
     trade: issue #15, finding 1); the pods are listed through the API server alongside step 0's read,
     and when they cannot be listed (API server down) the halt goes to the engine Service's address.
  If the API server cannot be reached within the deadline the engine halt still stands; the answer says
  `"kubernetes": "unreachable"` and the engagement (its own fresh engagedAt, pushed with the halt) is kept
  as *pending*, persisted, and patched into the TradingSystem with that same engagedAt as soon as the API
  server answers again (`sync_pending`, run by the watchdog loop), so the source of truth catches up and
  only a release naming that engagement resumes trading. If neither path worked: 503, nothing changed.

Deactivate: writes the release record (`release_patch`) to the TradingSystem and nothing else; the
operator and the engine's own watch carry it to the engine. API server unreachable -> 503. The engine is
released directly only in standalone mode (`QUANTZOO_KUBERNETES=0`), where there is no TradingSystem.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx
from quantzoo_api.engine_client import EngineUnreachable, push_kill_switch
from quantzoo_api.engine_pods import Target, select_targets
from quantzoo_api.killswitch import (
    KillSource,
    KillSwitchAck,
    KillSwitchCommand,
    TradingState,
    engagement_id,
    normalise_mode,
    now_engagement,
    stronger_mode,
)
from quantzoo_api.secret_file import SecretFile
from quantzoo_api.types import KillSwitchMode

from quantzoo_safety.audit import AuditLog
from quantzoo_safety.engagement import (
    EngageIntent,
    EngagePlan,
    NotEngaged,
    describe,
    kill_switch_of,
    plan_engage,
    plan_release,
)
from quantzoo_safety.kube import (
    ApiServerUnreachable,
    KubeConflict,
    KubeError,
    KubeRefused,
    TradingSystemClient,
    TradingSystemNotFound,
)
from quantzoo_safety.metrics import SafetyMetrics
from quantzoo_safety.observe import Observer
from quantzoo_safety.pending_store import PendingStore

log = logging.getLogger(__name__)

API_SOURCE = KillSource.SAFETY_API
AUTO_SOURCE = KillSource.WATCHDOG
# How long an activate waits to read the current switch before it pushes to the engine (so it never
# sends something weaker than what is engaged); past it, the direct halt goes out without the read.
READ_DEADLINE_SECONDS = 0.5
# How often the engine pods are listed ahead of need: a direct halt while the API server cannot list them
# (it is down, or etcd is) dials the pods last listed by IP as well as the engine Service, whose name and
# address need CoreDNS and kube-proxy, both of which follow the control plane.
TARGETS_REFRESH_SECONDS = 30.0
TARGETS_RETRY_SECONDS = 2.0  # while no engine pod is known yet (it starts after the safety pod)
RELEASE_UNREACHABLE = "release must be recorded in the TradingSystem; API server unreachable"
_CONFLICT_RETRIES = 4


def outcome_fields(answer: dict[str, Any]) -> dict[str, Any]:
    """What an audit entry keeps of an activate/deactivate answer: each path's result, the engagement,
    and the engine's ack (what the engagement cancelled and closed)."""
    out: dict[str, Any] = {"kubernetes": answer.get("kubernetes"), "engine": answer.get("engine")}
    if answer.get("engine_pods"):
        out["engine_pods"] = answer["engine_pods"]
    if answer.get("engagement"):
        out["engagement"] = answer["engagement"]
    ack = answer.get("engine_ack")
    if ack:
        keys = (
            "pod",
            "trading_state",
            "engagement",
            "cancelled_orders",
            "closed_positions",
            "working_orders",
        )
        out["engine_ack"] = {k: ack.get(k) for k in (*keys, "errors") if ack.get(k) is not None}
    return out


class KillSwitchError(Exception):
    """A refusal with its HTTP status; `detail` is safe to show (no token, no traceback)."""

    def __init__(self, status_code: int, detail: str, **audit: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.audit = audit


@dataclass(frozen=True)
class PathResult:
    result: str
    detail: str | None = None
    obj: dict[str, Any] | None = None
    plan: EngagePlan | None = None
    ack: KillSwitchAck | None = None
    pods: dict[str, str] = field(default_factory=dict)  # engine pod (or Service address) -> its result

    @property
    def ok(self) -> bool:
        return self.result in {
            "patched",
            "escalated",
            "already engaged",
            "halted",
            "reduce-only",
            "acknowledged",
            "released",
        }


def _why(exc: BaseException) -> str:
    if isinstance(exc, EngineUnreachable):
        return str(exc)
    if isinstance(exc, ValueError):  # an answer that is not a KillSwitchAck
        return "answered something that is not a kill-switch acknowledgement"
    return type(exc).__name__


def _engine_failure(failures: dict[str, BaseException]) -> PathResult:
    """No target acknowledged: "refused" if one answered 4xx (or nonsense), else "unreachable"."""
    refused = any(
        not isinstance(e, EngineUnreachable) or re.search(r"HTTP 4\d\d", str(e)) for e in failures.values()
    )
    detail = "; ".join(f"{who}: {_why(e)}" for who, e in failures.items())
    pods = {who: "refused" if refused else "unreachable" for who in failures}
    return PathResult(
        "refused" if refused else "unreachable", f"engine did not acknowledge: {detail}", pods=pods
    )


class KillSwitchService:
    def __init__(
        self,
        *,
        engine_url: str,
        engine_admin_token: str | SecretFile,
        http: httpx.AsyncClient,
        kube: TradingSystemClient | None,
        observer: Observer,
        metrics: SafetyMetrics,
        audit: AuditLog,
        kube_deadline: float = 2.0,
        engine_timeout: float = 2.0,
        pending_store: PendingStore | None = None,
    ) -> None:
        self.engine_url = engine_url
        # Read on every push: a rotated `<name>-engine-admin` Secret is used as soon as its file changes.
        self._engine_token = (
            engine_admin_token
            if isinstance(engine_admin_token, SecretFile)
            else SecretFile(None, engine_admin_token)
        )
        self.http = http
        self.kube = kube
        self.observer = observer
        self.metrics = metrics
        self.audit = audit
        self.kube_deadline = kube_deadline
        self.engine_timeout = engine_timeout
        self._lock = asyncio.Lock()  # one state change at a time through this process
        self.pending: EngageIntent | None = None  # engaged on the engine, not yet in the TradingSystem
        self.pending_since: str | None = None
        self.pending_store = pending_store or PendingStore(None)
        restored = self.pending_store.load()
        if restored is not None:  # a restart in the middle of an API server outage
            self.pending, self.pending_since = restored[0], restored[1] or now_engagement()
            self.metrics.pending_engage.set(1)
        # Standalone mode's record of the switch (camelCase, shaped like spec.killSwitch).
        self.local: dict[str, Any] = {"engaged": False}
        self.known_targets: list[Target] = []  # the engine pods last listed

    @property
    def standalone(self) -> bool:
        return self.kube is None

    # ----------------------------------------------------------------------------------- engine path
    def _service_target(self) -> list[Target]:
        return [Target(pod=self.engine_url, uid="", endpoint=self.engine_url)]

    async def _engine_targets(self) -> list[Target]:
        """Every live engine pod of the TradingSystem by pod IP, Ready or not. When the pods cannot be listed
        in time (the control plane is down): those last listed, and the engine Service's address; the
        Service's alone when none is known or found (standalone mode)."""
        if self.kube is None:
            return self._service_target()
        try:
            pods = await asyncio.wait_for(
                self.kube.list_engine_pods(), min(READ_DEADLINE_SECONDS, self.kube_deadline)
            )
        except (TimeoutError, KubeError) as exc:
            known = [t.pod for t in self.known_targets]
            log.info(
                "engine pods not listed (%s): halting through %s",
                exc or "timeout",
                ", ".join([*known, self.engine_url]),
            )
            return [*self.known_targets, *self._service_target()]
        self.known_targets = select_targets(pods)
        return self.known_targets or self._service_target()

    async def keep_engine_targets_known(self) -> None:
        """List the engine pods every TARGETS_REFRESH_SECONDS, so an outage finds their addresses known."""
        while self.kube is not None:
            try:
                await self._engine_targets()
            except Exception:  # the loop outlives any one failed list
                log.warning("listing the engine pods failed", exc_info=True)
            await asyncio.sleep(TARGETS_REFRESH_SECONDS if self.known_targets else TARGETS_RETRY_SECONDS)

    async def _push(
        self, command: KillSwitchCommand, targets: Awaitable[list[Target]] | None = None
    ) -> PathResult:
        """Push `command` to every target at once; ok if one acknowledged (the others are in `pods`)."""
        chosen = await (targets if targets is not None else self._engine_targets())
        results = await asyncio.gather(
            *(self._push_with_tokens(t.endpoint, command) for t in chosen), return_exceptions=True
        )
        acks = [(t, r) for t, r in zip(chosen, results, strict=True) if isinstance(r, KillSwitchAck)]
        failures = {
            t.pod: r
            for t, r in zip(chosen, results, strict=True)
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        }
        if not acks:
            self.metrics.engine_up.set(0)
            return _engine_failure(failures)
        self.metrics.engine_up.set(1)
        for _, ack in acks:
            self.observer.note_ack(ack)
        if command.engaged:
            self.metrics.direct_halts.inc()
        ack = acks[0][1]
        state = {TradingState.HALTED: "halted", TradingState.REDUCE_ONLY: "reduce-only"}.get(
            ack.trading_state, "acknowledged"
        )
        if not command.engaged:
            state = "released"
        pods = {t.pod: str(a.trading_state) for t, a in acks} | {who: "unreachable" for who in failures}
        detail = (
            "not acknowledged by " + "; ".join(f"{who}: {_why(e)}" for who, e in failures.items())
            if failures
            else None
        )
        return PathResult(state, detail, ack=ack, pods=pods)

    async def _push_with_tokens(self, endpoint: str, command: KillSwitchCommand) -> KillSwitchAck:
        """Push with the current engine admin token; refused (401), with the previous one while it is in
        its rotation overlap window -- the engine's kubelet may not have synced the new Secret yet."""
        tokens = self._engine_token.candidates() or [""]
        for i, token in enumerate(tokens):
            try:
                return await push_kill_switch(
                    self.http, endpoint, token, command, timeout=self.engine_timeout
                )
            except EngineUnreachable as exc:
                if i == len(tokens) - 1 or "HTTP 401" not in str(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _command(
        intent: EngageIntent, engagement: str | None, current: dict[str, Any] | None = None
    ) -> KillSwitchCommand:
        """The engine command for `intent`: while `current` (spec.killSwitch) is engaged, the stronger of it
        and the intent, with its who/why -- nothing but a release weakens an engaged switch."""
        ks = current or {}
        if ks.get("engaged"):
            return KillSwitchCommand(
                engaged=True,
                mode=stronger_mode(ks.get("mode"), intent.mode),
                close_positions=bool(ks.get("closePositions")) or intent.close_positions,
                reason=ks.get("reason") or intent.reason,
                operator=ks.get("operator") or intent.operator,
                source=intent.source,
                engagement=engagement_id(ks.get("engagedAt")) or engagement,
            )
        return KillSwitchCommand(
            engaged=True,
            mode=normalise_mode(intent.mode),
            close_positions=intent.close_positions,
            reason=intent.reason,
            operator=intent.operator,
            source=intent.source,
            engagement=engagement,
        )

    async def _read(self) -> tuple[dict[str, Any] | None, bool]:
        """(the TradingSystem or None, whether the API server answered within READ_DEADLINE_SECONDS)."""
        assert self.kube is not None
        try:
            return await asyncio.wait_for(
                self.kube.get(), min(READ_DEADLINE_SECONDS, self.kube_deadline)
            ), True
        except (TimeoutError, ApiServerUnreachable):
            return None, False
        except KubeError:  # refused or not found: an answer; the patch path reports it
            return None, True

    def _last_known(self) -> dict[str, Any] | None:
        """spec.killSwitch as the watchdog last saw it (for a direct halt while the API server is down)."""
        view = self.observer.last_cluster
        return view.spec_kill_switch if view is not None and view.found else None

    # ------------------------------------------------------------------------------- Kubernetes path
    async def _engage_cr(
        self,
        intent: EngageIntent,
        *,
        at: str,
        adopt: bool = False,
        first: dict[str, Any] | None = None,
    ) -> PathResult:
        """Engage (or escalate) spec.killSwitch; never overwrites the who/why of an engaged switch. A new
        engagement is written with engagedAt `at`; `adopt`: an engaged switch takes `at` as its engagedAt
        (the direct halt's engagement, which the engine holds)."""
        assert self.kube is not None
        try:
            return await asyncio.wait_for(self._engage_cr_loop(intent, at, adopt, first), self.kube_deadline)
        except TimeoutError:
            result = PathResult("unreachable", f"API server did not answer within {self.kube_deadline:g}s")
        except ApiServerUnreachable as exc:
            result = PathResult("unreachable", str(exc))
        except TradingSystemNotFound as exc:
            result = PathResult("not found", str(exc))
        except KubeRefused as exc:
            result = PathResult("refused", f"API server refused the patch: {exc.message}")
        except KubeError as exc:  # pragma: no cover - translate() maps everything onto the above
            result = PathResult("unreachable", str(exc))
        self.metrics.apiserver_up.set(0 if result.result == "unreachable" else 1)
        return result

    async def _engage_cr_loop(
        self, intent: EngageIntent, at: str, adopt: bool, first: dict[str, Any] | None
    ) -> PathResult:
        assert self.kube is not None
        for attempt in range(_CONFLICT_RETRIES + 1):
            obj = first if attempt == 0 and first is not None else await self.kube.get()
            plan = plan_engage(kill_switch_of(obj), intent, at=at, adopt=adopt)
            if plan.patch is None:
                self.metrics.apiserver_up.set(1)
                return PathResult("already engaged", None, obj, plan)
            # The precondition makes a concurrent engage lose cleanly (409) instead of overwriting the
            # first who/why; the last attempt goes without it so a busy object cannot block a kill.
            rv = obj.get("metadata", {}).get("resourceVersion") if attempt < _CONFLICT_RETRIES else None
            try:
                new = await self.kube.merge_patch_spec(plan.patch, resource_version=rv)
            except KubeConflict:
                continue
            self.metrics.apiserver_up.set(1)
            return PathResult("escalated" if plan.already_engaged else "patched", None, new, plan)
        raise KubeRefused(409, "the TradingSystem kept changing; kill switch not patched")  # pragma: no cover

    # ------------------------------------------------------------------------------------- activate
    async def activate(self, intent: EngageIntent) -> dict[str, Any]:
        """Engage the switch through every path; the answer body (raises KillSwitchError(503) if none)."""
        started = time.perf_counter()
        try:
            if self.standalone:
                return await self._activate_standalone(intent)
            return await self._activate_kubernetes(intent)
        finally:
            self.metrics.activate_duration.observe(time.perf_counter() - started)

    async def _activate_kubernetes(self, intent: EngageIntent) -> dict[str, Any]:
        targets = asyncio.create_task(self._engine_targets())  # listed while the switch is read
        obj, answered = await self._read()
        earlier = self.pending  # a direct halt still waiting to be recorded: the engine holds its engagement
        at = (self.pending_since if earlier is not None else None) or now_engagement()
        current = kill_switch_of(obj) if obj is not None else self._last_known()
        if (not answered or earlier is not None) and (current or {}).get("engaged"):
            current = {**(current or {}), "engagedAt": at}  # the direct halt's own engagement
        command = self._command(earlier or intent, at, current)
        engine_task = asyncio.create_task(self._push(command, targets))
        async with self._lock:
            if answered:
                kube = await self._engage_cr(intent, at=at, adopt=earlier is not None, first=obj)
            else:
                late = f"API server did not answer within {READ_DEADLINE_SECONDS:g}s"
                kube = PathResult("unreachable", late)
                self.metrics.apiserver_up.set(0)
            engine = await engine_task
            if not kube.ok and not engine.ok:
                raise KillSwitchError(
                    503,
                    f"kill switch NOT engaged: kubernetes {kube.result} ({kube.detail}); "
                    f"engine {engine.result} ({engine.detail})",
                    kubernetes=kube.result,
                    engine=engine.result,
                )
            if kube.result == "unreachable":
                # The halt is in force on the engine only: record it in the TradingSystem when possible.
                self._set_pending(intent, command.engagement or at)
            elif kube.ok:
                self._clear_pending()
        already = kube.result in {"already engaged", "escalated"}
        if kube.ok and kube.obj:
            self.observer.note(kube.obj)
        if kube.ok:
            ks = describe(kill_switch_of(kube.obj))
        elif kube.result == "unreachable" and earlier is not None:
            already = True  # engaged earlier through the direct path; that who/why stands
            ks = describe({**self._intent_spec(earlier), "engagedAt": self.pending_since})
        else:
            ks = describe({**self._intent_spec(intent), "engagedAt": command.engagement})
        if not already:
            self._count_activation(intent)
        self.metrics.kill_switch_engaged.set(1)
        return self._answer(already, ks, kube, engine, engagement=command.engagement)

    async def _activate_standalone(self, intent: EngageIntent) -> dict[str, Any]:
        async with self._lock:
            current = dict(self.local)
            plan = plan_engage(current, intent)
            if plan.already_engaged:
                # Re-push what is in force (plus any escalation): the engine holds the original who/why.
                current.update(plan.patch["spec"]["killSwitch"] if plan.patch else {})
                wanted = current
            else:
                wanted = plan.patch["spec"]["killSwitch"]
            engine = await self._push(
                KillSwitchCommand(
                    engaged=True,
                    mode=KillSwitchMode(wanted.get("mode", KillSwitchMode.HALT)),
                    close_positions=bool(wanted.get("closePositions")),
                    reason=wanted.get("reason"),
                    operator=wanted.get("operator"),
                    source=wanted.get("source") or intent.source,
                    engagement=engagement_id(wanted.get("engagedAt")),
                )
            )
            if not engine.ok:
                raise KillSwitchError(
                    503,
                    f"kill switch NOT engaged: engine {engine.result} ({engine.detail}); "
                    "no Kubernetes path in standalone mode",
                    kubernetes="disabled",
                    engine=engine.result,
                )
            self.local = {**self.local, **wanted}
        if not plan.already_engaged:
            self._count_activation(intent)
        self.metrics.kill_switch_engaged.set(1)
        kube = PathResult("disabled", "QUANTZOO_KUBERNETES=0: no TradingSystem to record in")
        return self._answer(plan.already_engaged, describe(self.local), kube, engine, plan.escalations)

    def _answer(
        self,
        already: bool,
        ks: dict[str, Any],
        kube: PathResult,
        engine: PathResult,
        escalations: tuple[str, ...] = (),
        *,
        engagement: str | None = None,
    ) -> dict[str, Any]:
        escalations = escalations or (kube.plan.escalations if kube.plan else ())
        if kube.result in {"patched", "escalated", "already engaged"}:
            where = "recorded in the TradingSystem"
        elif kube.result == "disabled":
            where = "standalone mode: engine halted directly"
        else:
            where = f"NOT recorded in the TradingSystem (kubernetes {kube.result}); engine halted directly"
            if kube.result == "unreachable":
                where += "; the patch is retried until the API server answers"
        if not engine.ok:
            where += f"; engine {engine.result}, the operator propagates the switch"
        message = ("kill switch already engaged" if already else "kill switch engaged") + f": {where}"
        return {
            "status": "already engaged" if already else "engaged",
            "message": message,
            "kill_switch": ks,
            "escalated": list(escalations),
            "kubernetes": kube.result,
            "kubernetes_detail": kube.detail,
            "engine": engine.result,
            "engine_detail": engine.detail,
            "engine_ack": engine.ack.model_dump(mode="json") if engine.ack else None,
            "engine_pods": engine.pods,
            "engagement": engagement or ks.get("engaged_at"),
        }

    @staticmethod
    def _intent_spec(intent: EngageIntent) -> dict[str, Any]:
        return plan_engage({}, intent).patch["spec"]["killSwitch"]  # type: ignore[index]

    def _count_activation(self, intent: EngageIntent) -> None:
        self.metrics.activations.labels(source="auto" if intent.source == AUTO_SOURCE else "api").inc()

    def _set_pending(self, intent: EngageIntent, engagement: str) -> None:
        """`pending_since` is the direct halt's engagement (its engagedAt), pushed to the engine and
        written into spec by `sync_pending`."""
        if self.pending is None:
            self.pending, self.pending_since = intent, engagement
            self.pending_store.save(intent, engagement)
        self.metrics.pending_engage.set(1)

    def _clear_pending(self) -> None:
        self.pending, self.pending_since = None, None
        self.pending_store.clear()
        self.metrics.pending_engage.set(0)

    async def reassert_pending(self) -> PathResult | None:
        """After a restart with a pending direct halt: halt the engine again (it may have restarted too and
        must not resume on a TradingSystem that does not know of the halt yet), then try to record it."""
        intent = self.pending
        if intent is None:
            return None
        pushed = await self._push(self._command(intent, self.pending_since))
        self.audit.record(
            "kill-switch.restore-pending",
            result=pushed.result,
            operator=intent.operator,
            source=intent.source,
            reason=intent.reason,
            detail=f"direct halt from {self.pending_since}, not yet in the TradingSystem, restored at start",
        )
        if self.kube is not None:
            await self.sync_pending()
        return pushed

    async def sync_pending(self) -> PathResult | None:
        """Record a direct engine halt in the TradingSystem once the API server answers again."""
        if self.pending is None or self.kube is None:
            return None
        async with self._lock:
            return await self._sync_pending_locked()

    async def _sync_pending_locked(self) -> PathResult | None:
        intent = self.pending
        if intent is None:
            return None
        engagement = self.pending_since or now_engagement()
        result = await self._engage_cr(intent, at=engagement, adopt=True)
        if result.ok:
            since = self.pending_since
            self._clear_pending()
            self.audit.record(
                "kill-switch.record-pending",
                result=result.result,
                operator=intent.operator,
                source=intent.source,
                reason=intent.reason,
                detail=f"engagement made directly on the engine at {since} is now in the TradingSystem",
            )
        return result

    # ----------------------------------------------------------------------------------- deactivate
    async def deactivate(self, *, operator: str, reason: str) -> dict[str, Any]:
        if self.standalone:
            return await self._deactivate_standalone(operator=operator, reason=reason)
        async with self._lock:
            if self.pending is not None:
                # First make the TradingSystem say what the engine already does, then release it there.
                synced = await self._sync_pending_locked()
                if synced is None or not synced.ok:
                    raise KillSwitchError(503, RELEASE_UNREACHABLE, kubernetes="unreachable")
            try:
                obj, patched = await asyncio.wait_for(self._release_cr(operator, reason), self.kube_deadline)
            except (TimeoutError, ApiServerUnreachable):
                self.metrics.apiserver_up.set(0)
                raise KillSwitchError(503, RELEASE_UNREACHABLE, kubernetes="unreachable") from None
            except TradingSystemNotFound as exc:
                raise KillSwitchError(503, f"TradingSystem {exc}", kubernetes="not found") from None
            except NotEngaged:
                self.metrics.apiserver_up.set(1)
                self.metrics.kill_switch_engaged.set(0)
                raise KillSwitchError(
                    409, "kill switch is not engaged; nothing to release", kubernetes="unchanged"
                ) from None
            except KubeRefused as exc:
                raise KillSwitchError(
                    409 if exc.status in {409, 422} else 503,
                    f"API server refused the release: {exc.message}",
                    kubernetes="refused",
                ) from None
        self.metrics.apiserver_up.set(1)
        self.observer.note(obj)
        self.metrics.deactivations.inc()
        self.metrics.kill_switch_engaged.set(0)
        return {
            "status": "released",
            "message": "release recorded in the TradingSystem; the operator and the engine's own watch "
            "carry it to the engine",
            "kill_switch": describe(kill_switch_of(obj)),
            "release": patched["spec"]["killSwitch"]["release"],
            "kubernetes": "patched",
            "engine": "released by the operator",
        }

    async def _release_cr(self, operator: str, reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.kube is not None
        for attempt in range(_CONFLICT_RETRIES + 1):
            obj = await self.kube.get()
            patch = plan_release(kill_switch_of(obj), operator=operator, reason=reason)
            rv = obj.get("metadata", {}).get("resourceVersion")
            try:
                return await self.kube.merge_patch_spec(patch, resource_version=rv), patch
            except KubeConflict:
                if attempt == _CONFLICT_RETRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _deactivate_standalone(self, *, operator: str, reason: str) -> dict[str, Any]:
        async with self._lock:
            engine_view = await self.observer.engine()
            engaged = bool(self.local.get("engaged")) or bool(engine_view.engaged)
            if not engine_view.reachable and not self.local.get("engaged"):
                raise KillSwitchError(503, f"cannot tell whether the switch is engaged: {engine_view.error}")
            if not engaged:
                raise KillSwitchError(
                    409, "kill switch is not engaged; nothing to release", engine="unchanged"
                )
            # The engagement to end: ours, or (engaged by another path) the one the engine reports.
            held = self.local.get("engagedAt") or engine_view.kill_switch.get("engagement")
            patch = plan_release({"engaged": True, "engagedAt": held}, operator=operator, reason=reason)
            engine = await self._push(
                KillSwitchCommand(
                    engaged=False,
                    reason=reason,
                    operator=operator,
                    source=API_SOURCE,
                    engagement=engagement_id(held),
                )
            )
            if not engine.ok:
                raise KillSwitchError(
                    503,
                    f"kill switch still engaged: engine {engine.result} ({engine.detail})",
                    engine=engine.result,
                )
            self.local = {**self.local, **patch["spec"]["killSwitch"]}
        self.metrics.deactivations.inc()
        self.metrics.kill_switch_engaged.set(0)
        return {
            "status": "released",
            "message": "standalone mode: engine released directly",
            "kill_switch": describe(self.local),
            "release": self.local["release"],
            "kubernetes": "disabled",
            "engine": engine.result,
        }
