"""The engine's PodDisruptionBudget: a voluntary eviction (a node drain, the cluster autoscaler) must not
stop a trading engine behind the trader's back. With one replica and `minAvailable: 1`, a drain waits
until someone stops the engine deliberately (engage the kill switch, then delete the pod). An engine
that is not Ready is not trading, so it may always be evicted (`unhealthyPodEvictionPolicy`)."""

from __future__ import annotations

from typing import Any

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata


def build(system: System) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(system, names.engine(system.name), labels.ENGINE),
        "spec": {
            "minAvailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": labels.selector(system.name, labels.ENGINE)},
        },
    }
