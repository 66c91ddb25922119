"""A change of spec.killSwitch alone re-applies only the ConfigMap (no cluster; a recording stand-in for
the operator's Kube): a kill-all of many systems must not also re-apply every system's children while
the kill path needs the API server. Any other change still applies everything."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
from quantzoo_operator.builders import BuildOptions
from quantzoo_operator.kube import Applied
from quantzoo_operator.reconciler import KILL_SWITCH_CHILDREN, Reconciler, kill_switch_only


class RecordingKube:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.created: list[str] = []
        self.owner_reads = 0

    async def get(self, api_version: str, kind: str, namespace: str, name: str, **_: Any) -> Any:
        return {"data": {"token": "dG9rZW4="}}  # the token Secrets exist

    async def get_tradingsystem(self, namespace: str, name: str, **_: Any) -> Any:
        self.owner_reads += 1
        return _body({"engaged": False})

    async def create(self, manifest: dict[str, Any], field_manager: str) -> dict[str, Any]:
        self.created.append(manifest["kind"])
        return manifest

    async def apply(self, manifest: dict[str, Any], field_manager: str) -> Applied:
        self.applied.append(manifest)
        return Applied({**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "5"}}, False)


class RecordingStatus:
    def __init__(self) -> None:
        self.refreshed: list[tuple[str, str]] = []

    def record_reconcile(self, *args: Any) -> None:
        pass

    async def refresh(self, namespace: str, name: str) -> None:
        self.refreshed.append((namespace, name))


class NoEvents:
    def post(self, *args: Any) -> None:
        pass


def _body(kill: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": 3},
        "spec": {"symbols": ["AAPL"], "killSwitch": kill},
    }


def test_which_diffs_touch_only_the_kill_switch() -> None:
    engage = kopf.Diff(
        [kopf.DiffItem(kopf.DiffOperation.CHANGE, ("spec", "killSwitch", "engaged"), False, True)]
    )
    assert kill_switch_only(engage)
    added = kopf.Diff(
        [kopf.DiffItem(kopf.DiffOperation.ADD, ("spec", "killSwitch"), None, {"engaged": True})]
    )
    assert kill_switch_only(added)
    mixed = kopf.Diff(
        [
            kopf.DiffItem(kopf.DiffOperation.CHANGE, ("spec", "killSwitch", "engaged"), False, True),
            kopf.DiffItem(kopf.DiffOperation.CHANGE, ("spec", "symbols"), ["AAPL"], ["MSFT"]),
        ]
    )
    assert not kill_switch_only(mixed)
    assert not kill_switch_only(kopf.Diff([kopf.DiffItem(kopf.DiffOperation.ADD, ("spec",), None, {})]))
    assert not kill_switch_only(kopf.Diff([]))  # nothing known to have changed: reconcile everything


def test_a_kill_switch_change_applies_only_the_config_map_which_carries_it() -> None:
    async def scenario() -> None:
        kube, status = RecordingKube(), RecordingStatus()
        reconciler = Reconciler(kube, NoEvents(), status, BuildOptions())  # type: ignore[arg-type]
        await reconciler.reconcile(
            _body({"engaged": True, "reason": "r", "operator": "o"}),
            kinds=KILL_SWITCH_CHILDREN,
            refresh=False,
        )
        assert [m["kind"] for m in kube.applied] == ["ConfigMap"]
        carried = [json.loads(v) for v in kube.applied[0]["data"].values()]
        assert any((d.get("spec") or {}).get("killSwitch", {}).get("engaged") is True for d in carried)
        assert status.refreshed == []  # the propagator refreshes once it knows the outcome

        kube.applied.clear()
        await reconciler.reconcile(_body({"engaged": True, "reason": "r", "operator": "o"}))
        kinds = {m["kind"] for m in kube.applied}
        assert {"ConfigMap", "StatefulSet", "Deployment", "Service"} <= kinds
        assert status.refreshed == [("ns", "demo")]

    asyncio.run(scenario())


def test_the_echo_of_the_operators_own_write_costs_no_read_of_the_owner() -> None:
    """Every child the operator applies comes back as a watch event; for one no newer than the write,
    the owner is not read (a kill-all of N systems would otherwise cost N more reads)."""

    async def scenario() -> None:
        kube, status = RecordingKube(), RecordingStatus()
        reconciler = Reconciler(kube, NoEvents(), status, BuildOptions())  # type: ignore[arg-type]
        await reconciler.reconcile(_body({"engaged": True}), kinds=KILL_SWITCH_CHILDREN, refresh=False)
        config_map = kube.applied[0]
        owner = [{"kind": "TradingSystem", "name": "demo", "uid": "u1", "controller": True}]
        echo = {
            "kind": "ConfigMap",
            "metadata": {**config_map["metadata"], "resourceVersion": "5", "ownerReferences": owner},
        }
        await reconciler.restore_child("MODIFIED", echo)
        assert kube.owner_reads == 0
        assert len(kube.applied) == 1
        # A newer version (someone edited it) is compared with the spec, and restored.
        edited = {**echo, "metadata": {**echo["metadata"], "resourceVersion": "9"}}
        await reconciler.restore_child("MODIFIED", edited)
        assert kube.owner_reads == 1
        assert len(kube.applied) == 2
        # A deletion is always restored, whatever the version.
        await reconciler.restore_child("DELETED", echo)
        assert kube.owner_reads == 2

    asyncio.run(scenario())


def test_an_apply_keeps_only_what_the_reconciler_reads_from_the_answer() -> None:
    """Resident memory at scale: the whole applied object is not held, only resourceVersion and the
    operator's own managedFields entry (what drift detection compares)."""
    from quantzoo_operator import FIELD_MANAGER

    ours = {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:data": {}}}
    theirs = {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:data": {}}}

    class AnsweringKube(RecordingKube):
        async def apply(self, manifest: dict[str, Any], field_manager: str) -> Applied:
            meta = {**manifest["metadata"], "resourceVersion": "7", "managedFields": [ours, theirs]}
            return Applied({**manifest, "metadata": meta, "status": {"big": "x" * 10000}}, True)

    async def scenario() -> None:
        reconciler = Reconciler(AnsweringKube(), NoEvents(), RecordingStatus(), BuildOptions())  # type: ignore[arg-type]
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
        applied, changed = await reconciler._apply(manifest)
        assert applied.created is True
        assert changed is False
        assert applied.obj == {"metadata": {"resourceVersion": "7", "managedFields": [ours]}}

    asyncio.run(scenario())
