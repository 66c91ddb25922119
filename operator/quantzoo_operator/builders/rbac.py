"""Roles and RoleBindings: each workload may touch only its own TradingSystem (resourceNames).

- engine: get/list/watch its TradingSystem (the independent kill-switch path: it watches spec.killSwitch
  itself, so a kill reaches it while the operator is down). list/watch with resourceNames works for a
  watch that selects `metadata.name=<name>` with a field selector. And its trading Lease
  (`<name>-trading`, coordination.k8s.io): get/update by name; create cannot be limited by name. And its
  TradingAccount (spec.accountRef), get/list/watch by name: a kill switch level it watches (issue #13);
  the TradingHalts are cluster-scoped, read through the chart's -halt-reader ClusterRoleBinding.
- safety: get/list/watch/patch its TradingSystem (activation patches spec.killSwitch: one source of truth),
  and `release` on it (the chart's kill-release admission policy asks for it: the runbook's deactivate),
  and create Events (its audit trail shows up in `kubectl describe ts`); list pods in its namespace (its
  direct halt reaches every engine pod by pod IP, Ready or not; list cannot be limited by name).
The operator can grant these because it holds them itself (RBAC escalation check).
"""

from __future__ import annotations

from typing import Any

from quantzoo_api import GROUP, PLURAL
from quantzoo_api.accounts import ACCOUNT_PLURAL

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata


def engine_rules(system: System) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
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
    if system.spec.account_ref is not None:
        rules.append(
            {
                "apiGroups": [GROUP],
                "resources": [ACCOUNT_PLURAL],
                "resourceNames": [system.spec.account_ref.name],
                "verbs": ["get", "list", "watch"],
            }
        )
    return rules


def safety_rules(system: System) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [system.name],
            "verbs": ["get", "list", "watch", "patch", "release"],
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
