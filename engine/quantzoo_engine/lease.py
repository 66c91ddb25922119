"""The trading Lease (coordination.k8s.io/v1): at most one engine submits orders for a TradingSystem.

The engine submits only while it holds `<name>-trading` and renews it through the API server; it stops
submitting `margin` seconds BEFORE the Lease could expire (proof.py), so an engine cut off from the API
server has stopped before any other engine may take over. Another engine takes the Lease only after it
has seen the same record unchanged for the Lease's whole duration, measured on its own monotonic clock
(as client-go's leader election does), so the two machines' wall clocks never have to agree.

`decide` is pure; `TradingLease` does the I/O (blocking, with client-side timeouts: run it in a thread);
`LeaseKeeper` renews it on the engine's loop and keeps the engine's fence up to date.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from quantzoo_api.watching import Backoff

from quantzoo_engine.proof import Freshness

log = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"


def lease_name(trading_system: str) -> str:
    """One Lease per account; for now one account per TradingSystem, so it is named after it."""
    return f"{trading_system}-trading"


def holder_identity(pod: str) -> str:
    """Per process, not per pod: a force-deleted pod's replacement has the same name as the original."""
    return f"{pod}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class LeaseView:
    """The Lease as the API server holds it."""

    holder: str | None
    duration_seconds: int
    renew_time: str | None
    resource_version: str | None
    transitions: int = 0


class LeaseDecision(StrEnum):
    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take_over"
    WAIT = "wait"  # another engine holds it, and we have not seen it unrenewed for a whole duration


def decide(view: LeaseView | None, me: str, unchanged_for: float) -> LeaseDecision:
    if view is None:
        return LeaseDecision.CREATE
    if view.holder == me:
        return LeaseDecision.RENEW
    if not view.holder or unchanged_for >= view.duration_seconds:
        return LeaseDecision.TAKE_OVER
    return LeaseDecision.WAIT


class LeaseObserver:
    """Since when (local monotonic time) the Lease record has looked the same."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._since = 0.0

    def unchanged_for(self, view: LeaseView | None, now: float) -> float:
        key = None if view is None else (view.holder, view.renew_time, view.resource_version)
        if key != self._key:
            self._key, self._since = key, now
        return now - self._since


def _micro_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TradingLease:
    """Acquire, renew and release one Lease. Blocking calls (the Kubernetes client is synchronous)."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration_seconds: int,
        request_timeout_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client  # only engines that watch Kubernetes pay for the import

        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_seconds = duration_seconds
        self.request_timeout = request_timeout_seconds
        self.monotonic = monotonic
        self.observer = LeaseObserver()

    def read(self) -> LeaseView | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.spec
        renew = spec.renew_time
        return LeaseView(
            holder=spec.holder_identity or None,
            duration_seconds=int(spec.lease_duration_seconds or self.duration_seconds),
            renew_time=renew.isoformat() if isinstance(renew, datetime) else renew,
            resource_version=lease.metadata.resource_version,
            transitions=int(spec.lease_transitions or 0),
        )

    def _body(self, view: LeaseView | None, *, holder: str, duration: int, acquired: bool) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": now,
            "leaseTransitions": (view.transitions if view else 0) + (1 if acquired and view else 0),
        }
        if acquired:
            spec["acquireTime"] = now
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if view is not None:
            metadata["resourceVersion"] = view.resource_version  # optimistic concurrency: 409 if it moved
        return {"apiVersion": LEASE_API_VERSION, "kind": "Lease", "metadata": metadata, "spec": spec}

    def attempt(self) -> float | None:
        """Acquire or renew. Returns the monotonic time the winning write was sent, or None (not held)."""
        from kubernetes.client.exceptions import ApiException

        view = self.read()
        decision = decide(view, self.identity, self.observer.unchanged_for(view, self.monotonic()))
        if decision is LeaseDecision.WAIT:
            return None
        sent = self.monotonic()
        try:
            if decision is LeaseDecision.CREATE:
                body = self._body(None, holder=self.identity, duration=self.duration_seconds, acquired=True)
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self.request_timeout)
            else:
                acquired = decision is LeaseDecision.TAKE_OVER
                body = self._body(
                    view, holder=self.identity, duration=self.duration_seconds, acquired=acquired
                )
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=self.request_timeout
                )
        except ApiException as exc:
            if exc.status == 409:
                return None  # another engine wrote first
            raise
        if decision is not LeaseDecision.RENEW:
            log.info("trading Lease acquired", extra={"lease": self.name, "decision": str(decision)})
        return sent

    def release(self) -> None:
        """On a clean stop: give the Lease up so a successor need not wait for it to expire."""
        view = self.read()
        if view is None or view.holder != self.identity:
            return
        body = self._body(view, holder="", duration=1, acquired=False)
        self.api.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=self.request_timeout
        )


class LeaseKeeper:
    """Renews the Lease every `renew_seconds` on the engine's loop and keeps `validity` up to date: valid
    until `sent + duration - margin` after each successful write."""

    def __init__(
        self,
        lease: TradingLease,
        validity: Freshness,
        on_change: Callable[[], None],
        *,
        renew_seconds: float,
        margin_seconds: float,
    ) -> None:
        self.lease = lease
        self.validity = validity
        self.on_change = on_change
        self.renew_seconds = renew_seconds
        self.margin_seconds = margin_seconds
        self.backoff = Backoff(initial=0.2, maximum=renew_seconds)

    async def run(self) -> None:
        while True:
            try:
                sent = await asyncio.to_thread(self.lease.attempt)
            except Exception as exc:
                sent = None
                log.warning("trading Lease renewal failed", extra={"error": type(exc).__name__})
            if sent is not None:
                self.validity.renew_until(sent + self.lease.duration_seconds - self.margin_seconds)
                self.backoff.reset()
            self.on_change()
            await asyncio.sleep(self.renew_seconds if sent is not None else self.backoff.next())

    async def release(self) -> None:
        self.validity.revoke()
        self.on_change()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.lease.release), self.lease.request_timeout + 1)
        except Exception as exc:
            log.warning("could not release the trading Lease", extra={"error": type(exc).__name__})
