"""Reconcile a TradingSystem: make its children match the spec, then report status.

Order: the token Secrets (created once, never re-applied), then everything the pods need
(ServiceAccounts, ConfigMap, RBAC, Services, NetworkPolicies, PDB), then the workloads. Every child is
server-side applied with force by the `quantzoo-operator` field manager: the operator owns the fields it
sets (someone's `kubectl edit` of one of them is undone), and leaves alone what it does not set
(e.g. `kubectl rollout restart`'s annotation).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quantzoo_api.types import BrokerKind

from quantzoo_operator import FIELD_MANAGER, accounts, events, names
from quantzoo_operator.builders import BuildOptions, System, admin_secret, build_children
from quantzoo_operator.events import EventRecorder
from quantzoo_operator.kube import Applied, Kube, KubeError
from quantzoo_operator.status import Reason
from quantzoo_operator.status_writer import StatusWriter, reconciled_inputs
from quantzoo_operator.strategy_check import strategy_problem
from quantzoo_operator.workloads import WORKLOAD_KINDS, WorkloadCache

log = logging.getLogger(__name__)

CREDENTIAL_KEYS = ("ALPACA_API_KEY", "ALPACA_API_SECRET")
# An API server refusing a child as invalid: the spec produced it, so it is the TradingSystem's fault.
CHILD_REJECTED_STATUSES = frozenset({400, 422})


class ReconcileError(Exception):
    """Reconciling failed; retried after the reconcile backoff (growing while it keeps failing)."""

    def __init__(self, message: str, reason: Reason = Reason.RECONCILE_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidTradingSystem(Exception):
    """The TradingSystem cannot be reconciled as it is (retrying will not help)."""

    reason = Reason.INVALID_SPEC


@dataclass(frozen=True)
class ChildKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def child_key(manifest: Mapping[str, Any]) -> ChildKey:
    meta = manifest["metadata"]
    return ChildKey(manifest["kind"], meta["namespace"], meta["name"])


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def system_from_body(body: Mapping[str, Any]) -> System:
    name = (body.get("metadata") or {}).get("name", "")
    if len(name) > names.MAX_NAME_LENGTH:
        raise InvalidTradingSystem(
            f"name {name!r} is longer than {names.MAX_NAME_LENGTH} characters: its engine pod and "
            "Services would not get valid names; recreate it with a shorter name"
        )
    try:
        return System.from_body(body)
    except ValueError as exc:
        raise InvalidTradingSystem(f"spec not understood: {exc}") from None


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        recorder: EventRecorder,
        status_writer: StatusWriter,
        options: BuildOptions,
        workloads: WorkloadCache | None = None,
    ) -> None:
        self.kube = kube
        self.recorder = recorder
        self.status = status_writer
        self.options = options
        self.workloads = WorkloadCache() if workloads is None else workloads
        # What was last applied per child (this process): tells a real change from a resync.
        self._applied: dict[ChildKey, str] = {}
        # The resourceVersion each child had after the operator's last write: an event about an older
        # version is stale (the write that followed it re-asserted the spec already).
        self._written: dict[ChildKey, int] = {}
        # A child's generation after the operator's last write (kinds whose spec has one: workloads,
        # PDB, NetworkPolicy), and the labels and annotations it set: an event with neither changed is
        # the controllers' status churn, not drift.
        self._generation_written: dict[ChildKey, int] = {}
        self._meta_written: dict[ChildKey, tuple[dict[str, str], dict[str, str]]] = {}
        # Which children belong to which TradingSystem, so its memory goes with it.
        self._children: dict[tuple[str, str], set[ChildKey]] = {}

    def forget(self, namespace: str, name: str) -> None:
        for key in self._children.pop((namespace, name), set()):
            for store in (self._applied, self._written, self._generation_written, self._meta_written):
                store.pop(key, None)

    # -- the whole TradingSystem ---------------------------------------------------------------------
    async def reconcile(self, body: Mapping[str, Any], *, created: bool = False) -> None:
        """Apply every child, then refresh the status. `created`: the TradingSystem is new (its token
        Secrets most likely do not exist yet)."""
        try:
            system = system_from_body(body)
        except InvalidTradingSystem as exc:
            await self._report_failure(body, exc.reason, str(exc))
            raise
        try:
            if problem := strategy_problem(system.spec):
                raise ReconcileError(problem, Reason.STRATEGY_INVALID)
            try:
                system = await accounts.resolve(self.kube, system)
            except accounts.AccountProblem as exc:
                raise ReconcileError(str(exc), exc.reason) from None
            await self.check_credentials(system)
            created_secrets = await self.ensure_secrets(system, create_first=created)
            manifests = build_children(system, self.options)
            first = [m for m in manifests if m["kind"] not in WORKLOAD_KINDS]
            workloads = [m for m in manifests if m["kind"] in WORKLOAD_KINDS]
            results = list(await asyncio.gather(*(self._apply(m) for m in first)))
            results += await asyncio.gather(*(self._apply(m) for m in workloads))
        except KubeError as exc:
            reason = (
                Reason.CHILD_REJECTED if exc.status in CHILD_REJECTED_STATUSES else Reason.RECONCILE_FAILED
            )
            message = f"applying children failed: {exc}"
            await self._report_failure(body, reason, message)
            raise ReconcileError(message, reason) from None
        except ReconcileError as exc:
            await self._report_failure(body, exc.reason, str(exc))
            raise
        self.status.record_reconcile(
            system.namespace, system.name, system.generation, None, inputs=reconciled_inputs(body)
        )
        self._announce(body, manifests, results, created_secrets)
        await self.status.refresh(system.namespace, system.name)
        if system.account_name is not None:  # its account lists it in status.systems
            await accounts.list_system(self.kube, system.namespace, system.account_name, system.name)

    async def _report_failure(self, body: Mapping[str, Any], reason: Reason, message: str) -> None:
        """Ready=False and Degraded=True with `reason`, and a Warning Event: what the person on call reads."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        self.status.record_reconcile(namespace, name, None, message, reason)
        try:
            await self.status.refresh(namespace, name)
        except Exception as exc:
            log.warning("status refresh failed: %s", exc)
        self.recorder.post(body, events.WARNING, reason, message)  # the Degraded condition's own reason

    # -- broker credentials --------------------------------------------------------------------------
    async def check_credentials(self, system: System) -> None:
        """The alpaca broker's Secret exists in the TradingSystem's OWN namespace with both keys; else no
        child is created (an engine pod could not start). Only key names are looked at, never values."""
        broker = system.spec.broker
        if broker.kind is not BrokerKind.ALPACA or not broker.credentials_secret:
            return
        secret_name = broker.credentials_secret
        secret = await self.kube.get("v1", "Secret", system.namespace, secret_name)
        if secret is None:
            raise ReconcileError(
                f"broker.credentialsSecret {secret_name!r}: no such Secret in namespace {system.namespace!r} "
                f"(it is looked up in the TradingSystem's own namespace only); create it with keys "
                f"{' and '.join(CREDENTIAL_KEYS)}",
                Reason.CREDENTIALS_SECRET_MISSING,
            )
        data = secret.get("data") or {}
        missing = [key for key in CREDENTIAL_KEYS if not data.get(key)]
        if missing:
            raise ReconcileError(
                f"broker.credentialsSecret {secret_name!r} has no (or an empty) {' and '.join(missing)}; "
                f"it needs keys {' and '.join(CREDENTIAL_KEYS)}",
                Reason.CREDENTIALS_SECRET_INVALID,
            )

    async def _apply(self, manifest: Mapping[str, Any]) -> tuple[Applied, bool]:
        """Apply one child; returns (result, changed since this process last applied it)."""
        key = child_key(manifest)
        digest = _digest(manifest)
        applied = await self.kube.apply(manifest, FIELD_MANAGER)
        before = self._applied.get(key)
        self._applied[key] = digest
        owner = (manifest["metadata"].get("ownerReferences") or [{}])[0].get("name")
        self._children.setdefault((key.namespace, owner), set()).add(key)
        written = _resource_version(applied.obj)
        if written is not None:
            self._written[key] = max(written, self._written.get(key, 0))
        if key.kind in WORKLOAD_KINDS:
            self.workloads.observe(None, applied.obj)
        generation = (applied.obj.get("metadata") or {}).get("generation")
        if isinstance(generation, int):
            meta = manifest["metadata"]
            self._generation_written[key] = generation
            self._meta_written[key] = (dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}))
        return Applied(_slim(applied.obj), applied.created), before is not None and before != digest

    def _announce(
        self,
        body: Mapping[str, Any],
        manifests: list[dict[str, Any]],
        results: list[tuple[Applied, bool]],
        created_secrets: list[str],
    ) -> None:
        created = [str(child_key(m)) for m, (r, _) in zip(manifests, results, strict=True) if r.created]
        created += [f"Secret/{s}" for s in created_secrets]
        if created:
            self.recorder.post(
                body,
                events.NORMAL,
                events.CHILDREN_CREATED,
                f"Created {len(created)} children: {', '.join(created)}",
            )
        changed = {
            m["kind"]: m for m, (r, ch) in zip(manifests, results, strict=True) if ch and not r.created
        }
        if "StatefulSet" in changed:
            image = changed["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["image"]
            self.recorder.post(
                body,
                events.NORMAL,
                events.ENGINE_ROLLOUT,
                f"Engine pod template changed (image {image}): the single engine replica is replaced, "
                "the old pod stops before the new one starts",
            )
        elif "ConfigMap" in changed:
            self.recorder.post(
                body,
                events.NORMAL,
                events.CONFIG_UPDATED,
                f"Configuration updated ({names.config(body['metadata']['name'])}): the engine applies risk "
                "limits and symbols live, without a restart",
            )

    # -- Secrets -------------------------------------------------------------------------------------
    async def ensure_secrets(self, system: System, *, create_first: bool = False) -> list[str]:
        """Create each token Secret that does not exist yet; returns the names created. Each is read
        first, unless `create_first` (a new TradingSystem): then the create is tried at once and the
        Secret read only if it exists already (a creation burst of N systems saves 2N reads)."""
        created = []
        for make in (admin_secret.engine_admin, admin_secret.safety_token):
            manifest = make(system, admin_secret.generate_token())
            name = manifest["metadata"]["name"]
            if not create_first:
                existing = await self.kube.get("v1", "Secret", system.namespace, name)
                if existing is not None:
                    self._check_token(system, name, existing)
                    continue
            try:
                await self.kube.create(manifest, FIELD_MANAGER)
                created.append(name)
            except KubeError as exc:
                if exc.status != 409:  # 409: it exists (made beforehand, or by a concurrent reconcile)
                    raise
                if create_first and (existing := await self.kube.get("v1", "Secret", system.namespace, name)):
                    self._check_token(system, name, existing)
        return created

    @staticmethod
    def _check_token(system: System, name: str, secret: Mapping[str, Any]) -> None:
        if admin_secret.read_token(dict(secret)) is None:
            log.warning(
                "Secret %s has no token; the engine and safety pods cannot start",
                name,
                extra={"namespace": system.namespace, "tradingsystem": system.name},
            )

    # -- one child (drift) ---------------------------------------------------------------------------
    def _stale(self, wanted: Mapping[str, Any], child: Mapping[str, Any]) -> bool:
        """Is `child` a version older than the operator's last write of it? Then that write has already
        re-asserted the spec, and a newer event follows any later change."""
        return self._stale_key(child_key(wanted), child)

    def _stale_key(self, key: ChildKey, child: Mapping[str, Any]) -> bool:
        version = _resource_version(child)
        return version is not None and version <= self._written.get(key, 0)

    def _as_written(self, key: ChildKey, child: Mapping[str, Any]) -> bool:
        """Are this child's spec (its generation) and the metadata the operator sets as it last wrote
        them? Then the event is the controllers' status churn: nothing to restore. (Kinds without a
        generation -- ConfigMap, Service, RBAC -- are judged by resourceVersion, `_stale_key`.)"""
        written = self._generation_written.get(key)
        meta = child.get("metadata") or {}
        if written is None or not isinstance(meta.get("generation"), int) or meta["generation"] > written:
            return False
        labels, annotations = self._meta_written.get(key, ({}, {}))
        have_labels, have_annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        return all(have_labels.get(k) == v for k, v in labels.items()) and all(
            have_annotations.get(k) == v for k, v in annotations.items()
        )

    async def restore_child(
        self, event_type: str, child: Mapping[str, Any], *, readiness_changed: bool = True
    ) -> None:
        """A child changed or vanished: apply what it should be (a no-op when nothing drifted). For a
        workload, the owner's status is refreshed when `readiness_changed` (workloads.py says)."""
        meta = child.get("metadata") or {}
        owner = next(
            (
                o
                for o in meta.get("ownerReferences") or ()
                if o.get("kind") == "TradingSystem" and o.get("controller")
            ),
            None,
        )
        if owner is None:
            return
        namespace = meta["namespace"]
        key = ChildKey(str(child.get("kind")), namespace, meta["name"])
        if event_type != "DELETED" and key.kind not in WORKLOAD_KINDS and self._stale_key(key, child):
            return  # the echo of the operator's own write: no need to read the owner to know that
        if event_type != "DELETED" and self._as_written(key, child):
            # No drift, and no read of the owner to know that; a workload may have a new readiness.
            if key.kind in WORKLOAD_KINDS and readiness_changed:
                self.status.refresh_soon(namespace, owner["name"])
            return
        ts = await self.kube.get_tradingsystem(namespace, owner["name"])
        if (
            ts is None
            or ts["metadata"].get("uid") != owner.get("uid")
            or ts["metadata"].get("deletionTimestamp")
        ):
            return  # the owner is gone or going: garbage collection takes the child
        try:
            system = await accounts.resolve(self.kube, system_from_body(ts))
        except (InvalidTradingSystem, accounts.AccountProblem):
            return  # the reconcile reports it; a child built without its account would trade elsewhere
        wanted = {(m["kind"], m["metadata"]["name"]): m for m in build_children(system, self.options)}.get(
            (child.get("kind"), meta["name"])
        )
        if wanted is not None and (event_type == "DELETED" or not self._stale(wanted, child)):
            applied, _ = await self._apply(wanted)
            label = f"{child.get('kind')}/{meta['name']}"
            if event_type == "DELETED" or applied.created:
                self.recorder.post(
                    ts,
                    events.WARNING,
                    events.CHILD_RESTORED,
                    f"{label} was deleted; the operator recreated it",
                )
            elif _our_fields(applied.obj) != _our_fields(child):
                who = _last_other_manager(child)
                self.recorder.post(
                    ts,
                    events.WARNING,
                    events.DRIFT_CORRECTED,
                    f"{label} was changed{f' by {who}' if who else ''}; the operator restored its spec",
                )
        if child.get("kind") in WORKLOAD_KINDS and readiness_changed:
            self.status.refresh_soon(namespace, owner["name"])


def _resource_version(obj: Mapping[str, Any]) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a caller of `_apply` reads from the API server's answer (resourceVersion and the operator's
    own managedFields entry): a reconcile of N systems at once holds N x 12 answers until each of its
    applies is done, and the whole objects made most of the operator's peak (and so resident) memory."""
    meta = obj.get("metadata") or {}
    ours = [
        e
        for e in meta.get("managedFields") or ()
        if e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply" and not e.get("subresource")
    ]
    return {"metadata": {"resourceVersion": meta.get("resourceVersion"), "managedFields": ours}}


def _our_fields(obj: Mapping[str, Any]) -> str | None:
    """The fields the operator owns in `obj` (they shrink when someone else takes one over)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or ():
        if (
            entry.get("manager") == FIELD_MANAGER
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            return json.dumps(entry.get("fieldsV1"), sort_keys=True)
    return None


def _last_other_manager(obj: Mapping[str, Any]) -> str | None:
    entries = [
        e
        for e in (obj.get("metadata") or {}).get("managedFields") or ()
        if e.get("manager") != FIELD_MANAGER and not e.get("subresource")
    ]
    entries.sort(key=lambda e: e.get("time") or "")
    return entries[-1].get("manager") if entries else None
