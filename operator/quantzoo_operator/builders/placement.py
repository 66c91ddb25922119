"""Where an operand pod runs and which image it runs: the TradingSystem's fields over the operator's
chart-level defaults, field by field (a TradingSystem that sets `tolerations` replaces the default list,
one that leaves it unset gets the default).

The safety pod also prefers a node other than the engine's (preferred pod anti-affinity on the engine's
labels): a lost node then takes the engine down but not the runbook's way to halt it. Preferred, not
required: on a single node, or when nothing else fits, the safety pod still runs.
"""

from __future__ import annotations

from typing import Any

from quantzoo_api.types import Placement, WorkloadSpec

from quantzoo_operator import labels
from quantzoo_operator.builders.common import BuildOptions, System

HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
AWAY_FROM_ENGINE_WEIGHT = 100


def image(workload: WorkloadSpec, options: BuildOptions) -> dict[str, str]:
    """The container's image and pull policy."""
    return {
        "image": workload.image or options.default_image,
        "imagePullPolicy": workload.image_pull_policy or options.default_image_pull_policy,
    }


def effective(workload: WorkloadSpec, defaults: Placement) -> Placement:
    """The TradingSystem's placement, each field it does not set taken from the defaults (set to an empty
    value, e.g. `tolerations: []`, it overrides the default)."""
    own = {
        name: getattr(workload, name) for name in Placement.model_fields if name in workload.model_fields_set
    }
    return defaults.model_copy(update=own)


def pod_fields(placement: Placement) -> dict[str, Any]:
    """The pod spec fields of a placement (only those that are set)."""
    out: dict[str, Any] = {}
    if placement.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": ref.name} for ref in placement.image_pull_secrets]
    if placement.node_selector:
        out["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        out["tolerations"] = [
            t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in placement.tolerations
        ]
    if placement.affinity:
        out["affinity"] = placement.affinity
    if placement.priority_class_name:
        out["priorityClassName"] = placement.priority_class_name
    return out


def away_from_engine(system: System, affinity: dict[str, Any]) -> dict[str, Any]:
    """`affinity` plus a preferred anti-affinity to this system's engine pod (the user's terms kept)."""
    term = {
        "weight": AWAY_FROM_ENGINE_WEIGHT,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": labels.selector(system.name, labels.ENGINE)},
            "topologyKey": HOSTNAME_TOPOLOGY,
        },
    }
    anti = dict(affinity.get("podAntiAffinity") or {})
    preferred = [*(anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []), term]
    return {
        **affinity,
        "podAntiAffinity": {**anti, "preferredDuringSchedulingIgnoredDuringExecution": preferred},
    }


def engine(system: System, options: BuildOptions) -> dict[str, Any]:
    return pod_fields(effective(system.spec.engine, options.operand_placement))


def safety(system: System, options: BuildOptions) -> dict[str, Any]:
    chosen = effective(system.spec.safety, options.operand_placement)
    return {**pod_fields(chosen), "affinity": away_from_engine(system, dict(chosen.affinity))}
