"""The engine StatefulSets and safety Deployments as the operator's child watch last saw them.

A TradingSystem's status is computed from its two workloads. Reading both from the API server at every
status refresh cost two GETs per refresh, and every workload event (several per system while its pods
start) asked for a refresh: at N = 300 that was most of the requests of a creation burst, and the queue
of them kept the operator busy long after every system was Ready. The watch (handlers/children.py)
already delivers each version, so the few fields the status reads are kept here from the newest version
seen (by resourceVersion), and an event that changes none of them asks for no refresh at all.

Pure bookkeeping, no I/O. A workload not seen yet (the operator just started) is read from the API
server by the status writer, which then records it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WORKLOAD_KINDS = frozenset({"StatefulSet", "Deployment"})

# What status.engine_ready / status.safety_ready read.
_SPEC_FIELDS = ("replicas",)
_STATUS_FIELDS = (
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
    "currentRevision",
    "updateRevision",
)

Key = tuple[str, str, str]  # kind, namespace, name


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def readiness_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a workload the status is computed from (and its resourceVersion)."""
    meta = obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "kind": obj.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "spec": {k: spec[k] for k in _SPEC_FIELDS if k in spec},
        "status": {k: status[k] for k in _STATUS_FIELDS if k in status},
    }


def _same_readiness(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        a["spec"] == b["spec"]
        and a["status"] == b["status"]
        and a["metadata"]["generation"] == b["metadata"]["generation"]
    )


class WorkloadCache:
    def __init__(self) -> None:
        self._seen: dict[Key, dict[str, Any]] = {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._seen.get((kind, namespace, name))

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Record a watch event (or an answer of the API server) about a workload. True when what the
        status reads from it changed -- or it appeared or went: then the owner's status wants a refresh.
        A version older than the one kept changes nothing."""
        kind = obj.get("kind")
        if kind not in WORKLOAD_KINDS:
            return False
        meta = obj.get("metadata") or {}
        key = (str(kind), str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self._seen.pop(key, None)
            return True
        before = self._seen.get(key)
        if before is not None and _version(obj) <= _version(before):
            return False
        view = readiness_view(obj)
        self._seen[key] = view
        return before is None or not _same_readiness(before, view)

    def forget(self, namespace: str, names: tuple[str, ...]) -> None:
        """Drop every workload of these names in `namespace` (a TradingSystem went)."""
        for kind in WORKLOAD_KINDS:
            for name in names:
                self._seen.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        return len(self._seen)
