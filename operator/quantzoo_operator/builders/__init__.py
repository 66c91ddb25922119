"""Pure builders: a TradingSystem (its identity and parsed spec) -> the manifests of its children.

One module per child kind, as CloudNativePG keeps `pkg/specs/...`. No I/O anywhere in this package: the
caller (reconciler.py) applies what these return. Secrets are the exception to "build and apply": their
token is generated once and never re-applied (see admin_secret.py).
"""

from __future__ import annotations

from typing import Any

from quantzoo_operator.builders import (
    config_map,
    engine_statefulset,
    network_policy,
    pod_disruption_budget,
    rbac,
    safety_deployment,
    service_accounts,
    services,
)
from quantzoo_operator.builders.common import BuildOptions, System

__all__ = ["BuildOptions", "System", "build_children"]


def build_children(system: System, options: BuildOptions | None = None) -> list[dict[str, Any]]:
    """Every applied child of `system`, in the order they should be created (pods last)."""
    options = options or BuildOptions()
    return [
        *service_accounts.build(system),
        config_map.build(system),
        *rbac.build(system),
        *services.build(system),
        *network_policy.build(system, options),
        pod_disruption_budget.build(system),
        engine_statefulset.build(system, options),
        safety_deployment.build(system, options),
    ]
