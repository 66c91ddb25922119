"""Events on the children the operator owns (label managed-by=quantzoo-operator): a deleted or edited
child is applied again (drift), and a workload's readiness change refreshes the owner's status (every
workload version is recorded first, workloads.py, so the status writer need not read it again)."""

from __future__ import annotations

from typing import Any

import kopf

from quantzoo_operator import labels
from quantzoo_operator.metrics import METRICS
from quantzoo_operator.runtime import Runtime

OWNED = {labels.MANAGED_BY: labels.MANAGED_BY_VALUE}

CHILD_RESOURCES = [
    ("apps/v1", "statefulsets"),
    ("apps/v1", "deployments"),
    ("v1", "services"),
    ("v1", "configmaps"),
    ("v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "rolebindings"),
    ("policy/v1", "poddisruptionbudgets"),
    ("networking.k8s.io/v1", "networkpolicies"),
]


@METRICS.instrument("child")
async def child_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    readiness_changed = runtime.status.workloads.observe(event.get("type"), event["object"])
    if event.get("type") is None:
        return  # the initial listing: reconcile's resume handler re-applies everything anyway
    await runtime.reconciler.restore_child(
        event["type"], event["object"], readiness_changed=readiness_changed
    )


for _api_version, _plural in CHILD_RESOURCES:
    kopf.on.event(_api_version, _plural, id=f"child-{_plural}", labels=OWNED)(child_event)
