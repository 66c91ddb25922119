"""The tombstone's pure parts (killswitch/tombstone.py): what the ConfigMap holds and the re-engage patch.
Milliseconds; tests/operator/test_tombstone.py runs the whole flow against the real API server."""

from __future__ import annotations

from quantzoo_operator.killswitch import tombstone
from quantzoo_operator.kube import KubeError, status_causes

ENGAGED = {
    "engaged": True,
    "mode": "ReduceOnly",
    "closePositions": True,
    "reason": "runaway",
    "operator": "alice",
    "engagedAt": "2026-12-05T18:00:00.000Z",
}


def test_the_tombstone_is_not_owned_and_not_a_managed_child():
    cm = tombstone.manifest("trading", "demo", ENGAGED, armed=True, note="deleted")
    meta = cm["metadata"]
    assert meta["name"] == "demo-kill-tombstone"
    assert "ownerReferences" not in meta  # garbage collection must keep it
    assert "app.kubernetes.io/managed-by" not in meta["labels"]  # drift repair must not touch it
    assert meta["labels"][tombstone.TOMBSTONE_LABEL] == "demo"
    assert tombstone.is_armed(cm)
    assert not tombstone.is_armed(tombstone.manifest("trading", "demo", {}, armed=False, note="released"))
    assert not tombstone.is_armed(None)


def test_reengage_is_a_new_engagement_with_the_old_incident():
    cm = tombstone.manifest("trading", "demo", ENGAGED, armed=True, note="deleted")
    ks = tombstone.reengage_patch(cm)["spec"]["killSwitch"]
    assert (ks["engaged"], ks["mode"], ks["closePositions"], ks["operator"]) == (
        True,
        "ReduceOnly",
        True,
        "alice",
    )
    assert ks["source"] == "operator:tombstone"
    assert "runaway" in ks["reason"]
    assert ks["engagedAt"] != ENGAGED["engagedAt"]  # a replayed release of the old engagement cannot end it
    assert ks["release"] is None


def test_a_damaged_tombstone_still_re_engages_as_halt():
    ks = tombstone.reengage_patch({"data": {"armed": "true", "killSwitch": "{not json"}})["spec"][
        "killSwitch"
    ]
    assert (ks["engaged"], ks["mode"]) == (True, "Halt")


def test_a_namespace_being_deleted_is_told_apart_from_other_refusals() -> None:
    # The API server's body when a namespace is terminating (NamespaceLifecycle admission).
    status = {
        "kind": "Status",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "details": {
            "name": "demo-kill-tombstone",
            "kind": "configmaps",
            "causes": [
                {
                    "reason": "NamespaceTerminating",
                    "message": "namespace ns is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        },
    }
    terminating = KubeError(403, "is being terminated", status_causes(status))
    assert tombstone.namespace_terminating(terminating)
    assert not tombstone.namespace_terminating(KubeError(403, "RBAC says no", status_causes({"code": 403})))
    assert not tombstone.namespace_terminating(KubeError(500, "x", ("NamespaceTerminating",)))
