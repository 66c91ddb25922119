"""An engaged halt outlives delete-and-recreate (issue #15, finding 6).

`kubectl replace --force`, Argo CD's Replace=true, or a prune followed by a re-add delete the
TradingSystem and create a new one: CRD transition rules never see that, and the new object says whatever
its manifest says. So the finalizer, when it lets go of a TradingSystem whose switch is ENGAGED, leaves a
tombstone: a labelled ConfigMap in the namespace, deliberately NOT owned by the TradingSystem (garbage
collection keeps it). When a TradingSystem of that name is created (or the operator resumes it), the
operator re-engages it from an armed tombstone -- a new engagement, patched into spec BEFORE any engine
is created -- so it does not trade until someone releases it. Only a release of the live object disarms
the tombstone (the operator never deletes: least privilege), and a later engaged delete re-arms it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from quantzoo_api.killswitch import KillSource, engage_patch, kill_switch_of

from quantzoo_operator import labels
from quantzoo_operator.kube import Kube, KubeError

log = logging.getLogger(__name__)

TOMBSTONE_LABEL = "trading.quantzoo.io/kill-tombstone"  # value: the TradingSystem's name
FIELD_MANAGER = "quantzoo-operator-tombstone"
ARMED = "armed"
KILL_SWITCH = "killSwitch"
NAMESPACE_TERMINATING = "NamespaceTerminating"  # the cause the API server's NamespaceLifecycle check names


# -- pure ------------------------------------------------------------------------------------------
def name_for(ts_name: str) -> str:
    return f"{ts_name}-kill-tombstone"[:253]


def manifest(
    namespace: str, ts_name: str, kill_switch: Mapping[str, Any], *, armed: bool, note: str
) -> dict[str, Any]:
    """The tombstone ConfigMap: what was engaged, whether it still holds, and why (no ownerReferences)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name_for(ts_name),
            "namespace": namespace,
            # Not the children's managed-by label: drift repair must never touch (or adopt) it.
            "labels": {TOMBSTONE_LABEL: ts_name[:63], labels.PART_OF: labels.APP_NAME},
        },
        "data": {
            ARMED: "true" if armed else "false",
            KILL_SWITCH: json.dumps(dict(kill_switch), sort_keys=True),
            "note": note[:1024],
        },
    }


def is_armed(configmap: Mapping[str, Any] | None) -> bool:
    return ((configmap or {}).get("data") or {}).get(ARMED) == "true"


def reengage_patch(configmap: Mapping[str, Any]) -> dict[str, Any]:
    """A new engagement carrying the deleted object's who/why/mode (fresh engagedAt: a release of the old
    engagement, replayed from a backup, cannot end it)."""
    try:
        old = json.loads(((configmap.get("data") or {}).get(KILL_SWITCH)) or "{}")
    except ValueError:
        old = {}
    reason = f"deleted while engaged, re-engaged on create: {old.get('reason') or 'no reason given'}"
    return engage_patch(
        reason=reason,
        operator=old.get("operator"),
        source=KillSource.TOMBSTONE,
        close_positions=bool(old.get("closePositions")),
        mode=old.get("mode") or "Halt",
    )


# -- I/O -------------------------------------------------------------------------------------------
async def record(kube: Kube, body: Mapping[str, Any]) -> bool:
    """Before an ENGAGED TradingSystem goes: arm its tombstone. Returns whether it was engaged."""
    ks = kill_switch_of(body)
    if not ks.get("engaged"):
        return False
    meta = body.get("metadata") or {}
    note = (
        f"TradingSystem deleted while engaged (uid {meta.get('uid', '?')}); a release of the new one disarms"
    )
    extra = {"namespace": meta["namespace"], "tradingsystem": meta["name"]}
    try:
        await kube.apply(manifest(meta["namespace"], meta["name"], ks, armed=True, note=note), FIELD_MANAGER)
    except KubeError as exc:
        if not namespace_terminating(exc):
            raise
        # The whole namespace is going: a tombstone would go with it, and the API server refuses to create
        # one (retrying for ever kept the TradingSystem, and so its namespace, from ever being deleted).
        log.info("no kill tombstone: the namespace is being deleted", extra=extra)
        return True
    log.info("kill tombstone armed", extra=extra)
    return True


def namespace_terminating(exc: KubeError) -> bool:
    """The API server's refusal to create anything in a namespace that is being deleted."""
    return exc.status == 403 and NAMESPACE_TERMINATING in exc.causes


async def find(kube: Kube, namespace: str, ts_name: str) -> dict[str, Any] | None:
    """By label (the operator may list ConfigMaps, not get them: least privilege)."""
    items = await kube.list_objects(
        "v1", "ConfigMap", namespace, f"{TOMBSTONE_LABEL}={ts_name[:63]}", kill=True
    )
    return next((i for i in items if (i.get("metadata") or {}).get("name") == name_for(ts_name)), None)


async def reengage(kube: Kube, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """On create/resume: a TradingSystem with an armed tombstone and a released switch is engaged (in spec,
    before its engine exists). Returns the body to reconcile from (the patched one if it was patched)."""
    if kill_switch_of(body).get("engaged"):
        return body
    meta = body.get("metadata") or {}
    configmap = await find(kube, meta["namespace"], meta["name"])
    if not is_armed(configmap):
        return body
    assert configmap is not None
    patched = await kube.merge_patch_tradingsystem(meta["namespace"], meta["name"], reengage_patch(configmap))
    log.warning(
        "re-engaged from a kill tombstone: deleted while engaged",
        extra={"namespace": meta["namespace"], "tradingsystem": meta["name"]},
    )
    return patched


async def disarm(kube: Kube, body: Mapping[str, Any]) -> None:
    """A release of the live object: the tombstone (if any) no longer holds."""
    meta = body.get("metadata") or {}
    configmap = await find(kube, meta["namespace"], meta["name"])
    if not is_armed(configmap):
        return
    release = kill_switch_of(body).get("release") or {}
    note = f"released by {release.get('operator', '?')}: {release.get('reason', '')}"
    await kube.apply(manifest(meta["namespace"], meta["name"], {}, armed=False, note=note), FIELD_MANAGER)
