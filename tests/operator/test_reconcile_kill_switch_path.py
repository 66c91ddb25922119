"""A change of spec.killSwitch alone costs the reconcile side nothing (no cluster; recording stand-ins
for the operator's Kube): kopf does not see it (it is outside kopf's diff base), no child carries it, and
the status writer records the new generation as observed because nothing it builds from changed. A
kill-all of many systems then puts only the kill itself on the API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
from quantzoo_operator.builders import BuildOptions
from quantzoo_operator.kube import Applied
from quantzoo_operator.reconciler import Reconciler
from quantzoo_operator.settings import OperatorConfig, configure_kopf
from quantzoo_operator.status_writer import StatusWriter, reconciled_inputs


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

    def record_reconcile(self, *args: Any, **kwargs: Any) -> None:
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


def test_kopf_does_not_diff_the_kill_switch() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorConfig())
    storage = settings.persistence.diffbase_storage
    engaged = _body({"engaged": True, "reason": "r", "operator": "o"})
    released = _body({"engaged": False})
    assert storage.build(body=kopf.Body(engaged)) == storage.build(body=kopf.Body(released))
    other = {**released, "spec": {**released["spec"], "symbols": ["MSFT"]}}
    assert storage.build(body=kopf.Body(other)) != storage.build(body=kopf.Body(released))


def test_no_child_carries_the_kill_switch() -> None:
    async def scenario() -> None:
        kube, status = RecordingKube(), RecordingStatus()
        reconciler = Reconciler(kube, NoEvents(), status, BuildOptions())  # type: ignore[arg-type]
        await reconciler.reconcile(_body({"engaged": True, "reason": "r", "operator": "o"}))
        engaged = {json.dumps(m, sort_keys=True) for m in kube.applied}
        assert all("killSwitch" not in text for text in engaged)
        kube.applied.clear()
        await reconciler.reconcile(_body({"engaged": False}))
        assert {json.dumps(m, sort_keys=True) for m in kube.applied} == engaged
        assert status.refreshed == [("ns", "demo"), ("ns", "demo")]

    asyncio.run(scenario())


class StatusKube:
    """get_tradingsystem answers `ts`; everything else is absent; status applies are recorded."""

    def __init__(self, ts: dict[str, Any]) -> None:
        self.ts = ts
        self.applied: list[dict[str, Any]] = []

    async def get_tradingsystem(self, namespace: str, name: str, **_: Any) -> Any:
        return self.ts

    async def get(self, *args: Any, **_: Any) -> Any:
        return None

    async def apply_status(self, namespace: str, name: str, body: dict[str, Any], manager: str) -> None:
        self.applied.append(body)


def _engaged_at(body: dict[str, Any], generation: int) -> dict[str, Any]:
    spec = {**body["spec"], "killSwitch": {"engaged": True, "reason": "r"}}
    return {**body, "metadata": {**body["metadata"], "generation": generation}, "spec": spec}


def _observed(kube: StatusKube) -> int:
    return kube.applied[-1]["status"]["observedGeneration"]


def test_a_kill_switch_only_generation_counts_as_observed() -> None:
    async def scenario() -> None:
        reconciled = _body({"engaged": False})  # generation 3
        kube = StatusKube(reconciled)
        writer = StatusWriter(kube, NoEvents())  # type: ignore[arg-type]
        writer.record_reconcile("ns", "demo", 3, None, inputs=reconciled_inputs(reconciled))
        await writer.refresh("ns", "demo")
        assert _observed(kube) == 3
        # Generation 4 changes only the kill switch: observed without a reconcile.
        kube.ts = _engaged_at(reconciled, 4)
        await writer.refresh("ns", "demo")
        assert _observed(kube) == 4
        # Generation 5 changes the symbols: not observed until reconcile has applied it.
        kube.ts = {**kube.ts, "metadata": {**kube.ts["metadata"], "generation": 5},
                   "spec": {**kube.ts["spec"], "symbols": ["MSFT"]}}  # fmt: skip
        await writer.refresh("ns", "demo")
        assert _observed(kube) == 4
        writer.record_reconcile("ns", "demo", 5, None, inputs=reconciled_inputs(kube.ts))
        await writer.refresh("ns", "demo")
        assert _observed(kube) == 5

    asyncio.run(scenario())


def test_a_failing_reconcile_is_not_papered_over_by_a_kill_switch_change() -> None:
    async def scenario() -> None:
        reconciled = _body({"engaged": False})
        kube = StatusKube(reconciled)
        writer = StatusWriter(kube, NoEvents())  # type: ignore[arg-type]
        writer.record_reconcile("ns", "demo", 3, None, inputs=reconciled_inputs(reconciled))
        writer.record_reconcile("ns", "demo", None, "applying children failed")
        kube.ts = _engaged_at(reconciled, 4)
        await writer.refresh("ns", "demo")
        assert _observed(kube) == 3

    asyncio.run(scenario())


def test_the_echo_of_the_operators_own_write_costs_no_read_of_the_owner() -> None:
    """Every child the operator applies comes back as a watch event; for one no newer than the write,
    the owner is not read (a kill-all of N systems would otherwise cost N more reads)."""

    async def scenario() -> None:
        kube, status = RecordingKube(), RecordingStatus()
        reconciler = Reconciler(kube, NoEvents(), status, BuildOptions())  # type: ignore[arg-type]
        await reconciler.reconcile(_body({"engaged": True}))
        config_map = next(m for m in kube.applied if m["kind"] == "ConfigMap")
        kube.applied.clear()
        owner = [{"kind": "TradingSystem", "name": "demo", "uid": "u1", "controller": True}]
        echo = {
            "kind": "ConfigMap",
            "metadata": {**config_map["metadata"], "resourceVersion": "5", "ownerReferences": owner},
        }
        await reconciler.restore_child("MODIFIED", echo)
        assert kube.owner_reads == 0
        assert len(kube.applied) == 0
        # A newer version (someone edited it) is compared with the spec, and restored.
        edited = {**echo, "metadata": {**echo["metadata"], "resourceVersion": "9"}}
        await reconciler.restore_child("MODIFIED", edited)
        assert kube.owner_reads == 1
        assert len(kube.applied) == 1
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
