"""A workload's status churn costs the API server nothing beyond the status write it may call for (no
cluster; recording stand-ins for the operator's Kube, which do not model the API server's answers beyond
resourceVersion and generation).

While the pods of N systems start, the controllers write each StatefulSet's and Deployment's status
several times. Each such event used to cost a read of the owner, a re-apply of the workload and a
status refresh reading the TradingSystem and both workloads again; at N = 300 their queue kept the
operator busy long after every system was Ready (bench/results/scale.json).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from quantzoo_operator.builders import BuildOptions
from quantzoo_operator.kube import Applied
from quantzoo_operator.reconciler import Reconciler
from quantzoo_operator.status_writer import StatusWriter
from quantzoo_operator.workloads import WorkloadCache


def _sts(rv: int, *, generation: int = 1, ready: int = 0, labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "demo-engine",
            "namespace": "ns",
            "resourceVersion": str(rv),
            "generation": generation,
            "labels": labels or {},
            "ownerReferences": [{"kind": "TradingSystem", "name": "demo", "uid": "u1", "controller": True}],
        },
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "readyReplicas": ready, "observedGeneration": generation},
    }


def test_only_a_change_of_what_the_status_reads_asks_for_a_refresh() -> None:
    cache = WorkloadCache()
    assert cache.observe("ADDED", _sts(10)) is True  # first seen
    churn = _sts(11)
    churn["status"]["currentReplicas"] = 1  # not read by the status
    assert cache.observe("MODIFIED", churn) is False
    assert cache.observe("MODIFIED", _sts(12, ready=1)) is True
    assert cache.observe("MODIFIED", _sts(11, ready=0)) is False  # older than what is kept
    assert cache.get("StatefulSet", "ns", "demo-engine")["status"]["readyReplicas"] == 1
    assert cache.observe("DELETED", _sts(13, ready=1)) is True
    assert cache.get("StatefulSet", "ns", "demo-engine") is None
    assert cache.observe("MODIFIED", {"kind": "ConfigMap", "metadata": {"name": "c"}}) is False


class CountingKube:
    """Answers a TradingSystem and counts every read and write; applies echo the manifest with a
    resourceVersion and generation 1."""

    def __init__(self) -> None:
        self.owner_reads = 0
        self.workload_reads = 0
        self.applied: list[str] = []
        self.status_writes = 0

    async def get(self, api_version: str, kind: str, namespace: str, name: str, **_: Any) -> Any:
        if kind in ("StatefulSet", "Deployment"):
            self.workload_reads += 1
            return None
        return {"data": {"token": "dG9rZW4="}}  # the token Secrets exist

    async def get_tradingsystem(self, namespace: str, name: str, **_: Any) -> Any:
        self.owner_reads += 1
        return {
            "apiVersion": "trading.quantzoo.io/v1alpha1",
            "kind": "TradingSystem",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"symbols": ["AAPL"]},
        }

    async def create(self, manifest: dict[str, Any], field_manager: str) -> dict[str, Any]:
        return manifest

    async def apply(self, manifest: dict[str, Any], field_manager: str) -> Applied:
        self.applied.append(manifest["kind"])
        obj = copy.deepcopy(manifest)
        obj["metadata"].update(resourceVersion="5", generation=1)
        return Applied(obj, False)

    async def apply_status(self, *args: Any, **_: Any) -> dict[str, Any]:
        self.status_writes += 1
        return {}


class NoEvents:
    def post(self, *args: Any) -> None:
        pass


def _reconciled() -> tuple[CountingKube, Reconciler, dict[str, Any]]:
    kube = CountingKube()
    writer = StatusWriter(kube, NoEvents())  # type: ignore[arg-type]
    writer.settle_seconds = 0.0
    reconciler = Reconciler(kube, NoEvents(), writer, BuildOptions(), writer.workloads)  # type: ignore[arg-type]

    async def reconcile() -> None:
        await reconciler.reconcile(await kube.get_tradingsystem("ns", "demo"))

    asyncio.run(reconcile())
    sts = next(m for m in _built(reconciler) if m["kind"] == "StatefulSet")
    kube.owner_reads = kube.workload_reads = kube.status_writes = 0
    kube.applied.clear()
    return kube, reconciler, sts


def _built(reconciler: Reconciler) -> list[dict[str, Any]]:
    from quantzoo_operator.builders import build_children
    from quantzoo_operator.reconciler import system_from_body

    body = asyncio.run(CountingKube().get_tradingsystem("ns", "demo"))
    return build_children(system_from_body(body), reconciler.options)


def _event(reconciler: Reconciler, event_type: str, obj: dict[str, Any]) -> None:
    """What handlers/children.py does with a workload's watch event."""

    async def handle() -> None:
        changed = reconciler.workloads.observe(event_type, obj)
        await reconciler.restore_child(event_type, obj, readiness_changed=changed)
        await asyncio.sleep(0.01)  # the status refresh it asked for runs

    asyncio.run(handle())


def test_a_workloads_status_churn_reads_only_the_owner_and_writes_only_its_status() -> None:
    kube, reconciler, sts = _reconciled()
    labels = sts["metadata"]["labels"]
    _event(reconciler, "MODIFIED", _sts(6, ready=1, labels=labels))  # the pod became ready
    assert (kube.owner_reads, kube.workload_reads, kube.applied, kube.status_writes) == (1, 0, [], 1)
    churn = _sts(7, ready=1, labels=labels)
    churn["status"]["currentReplicas"] = 1  # nothing the status reads
    _event(reconciler, "MODIFIED", churn)
    assert (kube.owner_reads, kube.workload_reads, kube.applied, kube.status_writes) == (1, 0, [], 1)


def test_a_workloads_spec_or_label_edit_is_still_restored() -> None:
    kube, reconciler, sts = _reconciled()
    labels = sts["metadata"]["labels"]
    _event(reconciler, "MODIFIED", _sts(6, generation=2, labels=labels))  # someone edited the spec
    assert kube.applied == ["StatefulSet"]
    kube.applied.clear()
    _event(reconciler, "MODIFIED", _sts(8, labels={**labels, next(iter(labels)): "someone-else"}))
    assert kube.applied == ["StatefulSet"]
    kube.applied.clear()
    _event(reconciler, "DELETED", _sts(9, labels=labels))
    assert kube.applied == ["StatefulSet"]


def test_a_pdbs_status_churn_costs_nothing_its_spec_edit_is_restored() -> None:
    """The disruption controller writes each PodDisruptionBudget's status: not drift (its generation
    and labels are as the operator wrote them), so neither the owner is read nor the PDB re-applied."""
    kube, reconciler, _ = _reconciled()
    pdb = next(m for m in _built(reconciler) if m["kind"] == "PodDisruptionBudget")
    churn = copy.deepcopy(pdb)
    churn["metadata"].update(resourceVersion="9", generation=1)
    churn["status"] = {"currentHealthy": 1}
    _event(reconciler, "MODIFIED", churn)
    assert (kube.owner_reads, kube.applied) == (0, [])
    churn["metadata"].update(resourceVersion="10", generation=2)  # someone edited its spec
    _event(reconciler, "MODIFIED", churn)
    assert (kube.owner_reads, kube.applied) == (1, ["PodDisruptionBudget"])


def test_workload_events_in_quick_succession_cost_one_status_refresh() -> None:
    """A starting pod moves its StatefulSet through several states within a second: one refresh (one
    read of the owner, one status write) covers them."""
    kube, reconciler, sts = _reconciled()
    reconciler.status.settle_seconds = 0.05
    labels = sts["metadata"]["labels"]

    async def burst() -> None:
        for rv, ready in ((6, 0), (7, 1)):
            obj = _sts(rv, ready=ready, labels=labels)
            changed = reconciler.workloads.observe("MODIFIED", obj)
            assert changed
            await reconciler.restore_child("MODIFIED", obj, readiness_changed=changed)
        await asyncio.sleep(0.2)

    asyncio.run(burst())
    assert (kube.owner_reads, kube.status_writes) == (1, 1)
