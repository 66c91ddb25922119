"""Kubernetes Events for the person on call: what happened, in words, on the TradingSystem.

Posted through the core/v1 Events API (`kubectl describe ts NAME` lists them), in the background so no
caller waits for one. Every reason of an operator Event is here; a reason that is also a condition's is
`quantzoo_api.conditions.Reason` itself (one spelling), and a failed reconcile's Warning Event carries the
Degraded condition's reason. No token, ever, in a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from quantzoo_api import API_VERSION, KIND
from quantzoo_api.conditions import Reason

from quantzoo_operator import COMPONENT, status
from quantzoo_operator.kube import Kube

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"

# Reasons of the operator's Events.
CHILDREN_CREATED = "ChildrenCreated"
CONFIG_UPDATED = "ConfigUpdated"
ENGINE_ROLLOUT = "EngineRollout"
DRIFT_CORRECTED = "DriftCorrected"
CHILD_RESTORED = "ChildRestored"
RECONCILE_FAILED = Reason.RECONCILE_FAILED
ENGINE_READY = "EngineReady"
ENGINE_NOT_READY = Reason.ENGINE_NOT_READY
SAFETY_READY = "SafetyReady"
SAFETY_NOT_READY = Reason.SAFETY_NOT_READY
READY = "Ready"
DEGRADED = "Degraded"
RECOVERED = "Recovered"
KILL_SWITCH_ENGAGED = "KillSwitchEngaged"
KILL_SWITCH_RELEASED = "KillSwitchReleased"
KILL_SWITCH_UNACKNOWLEDGED = Reason.KILL_SWITCH_UNACKNOWLEDGED
KILL_SWITCH_REASSERTED = "KillSwitchReasserted"
HALTED_BEFORE_DELETE = "HaltedBeforeDelete"
DELETE_WITHOUT_HALT = "DeletionProceededWithoutHalt"


def reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }


def event_body(
    ref: Mapping[str, Any], type_: str, reason: str, message: str, instance: str
) -> dict[str, Any]:
    now = status.now_iso()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref['name']}.", "namespace": ref["namespace"]},
        "involvedObject": dict(ref),
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: Kube, instance: str) -> None:
        self.kube = kube
        self.instance = instance
        self._tasks: set[asyncio.Task[None]] = set()

    def post(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an Event about a TradingSystem (`body` or a reference to it); returns at once."""
        ref = reference(body) if "metadata" in body else dict(body)
        log.log(
            logging.WARNING if type_ == WARNING else logging.INFO,
            "%s: %s",
            reason,
            message,
            extra={"namespace": ref.get("namespace"), "tradingsystem": ref.get("name"), "reason": reason},
        )
        task = asyncio.get_running_loop().create_task(self._post(ref, type_, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, ref: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        body = event_body(ref, type_, reason, message, self.instance)
        try:
            await self.kube.run(
                self.kube.request, "POST", f"/api/v1/namespaces/{ref['namespace']}/events", body=body
            )
        except Exception as exc:
            log.warning(
                "could not post Event %s: %s",
                reason,
                exc,
                extra={"namespace": ref.get("namespace"), "tradingsystem": ref.get("name")},
            )

    async def drain(self, timeout: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
