"""Roles and RoleBindings: each workload may touch only its own TradingSystem (resourceNames).

- engine: get/list/watch its TradingSystem (the independent kill-switch path: it watches spec.killSwitch
  itself, so a kill reaches it while the operator is down). list/watch with resourceNames works for a
  watch that selects `metadata.name=<name>` with a field selector. And its trading Lease
  (`<name>-trading`, coordination.k8s.io): get/update by name; create cannot be limited by name.
- safety: get/list/watch/patch its TradingSystem (activation patches spec.killSwitch: one source of truth),
  and create Events (its audit trail shows up in `kubectl describe ts`); list pods in its namespace (its
  direct halt reaches every engine pod by pod IP, Ready or not; list cannot be limited by name).
The operator can grant these because it holds them itself (RBAC escalation check).
"""

from __future__ import annotations

from typing import Any

from quantzoo_api import GROUP, PLURAL

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata


def engine_rules(system: System) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [system.name],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [f"{system.name}-trading"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]


def safety_rules(system: System) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [system.name],
            "verbs": ["get", "list", "watch", "patch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]


def _role(system: System, name: str, component: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(system, name, component),
        "rules": rules,
    }


def _binding(system: System, name: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(system, name, component),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": system.namespace}],
    }


def build(system: System) -> list[dict[str, Any]]:
    engine, safety = names.engine(system.name), names.safety(system.name)
    return [
        _role(system, engine, labels.ENGINE, engine_rules(system)),
        _role(system, safety, labels.SAFETY, safety_rules(system)),
        _binding(system, engine, labels.ENGINE),
        _binding(system, safety, labels.SAFETY),
    ]
