"""Labels of every child object, and which labels of a TradingSystem may travel to its children.

Selectors use three stable labels (name, component, system). ArgoCD tracks what it owns with
`app.kubernetes.io/instance` and `argocd.argoproj.io/*`; a child carrying those would be adopted (and
pruned) by ArgoCD, so they are never copied from the TradingSystem. No annotation is copied at all.
"""

from __future__ import annotations

from collections.abc import Mapping

# The selector's keys are shared with the safety service (it finds the engine pods too): one home.
from quantzoo_api.engine_pods import APP_NAME, ENGINE_COMPONENT
from quantzoo_api.engine_pods import COMPONENT_LABEL as COMPONENT
from quantzoo_api.engine_pods import NAME_LABEL as NAME
from quantzoo_api.engine_pods import SYSTEM_LABEL as SYSTEM

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "quantzoo-operator"

ENGINE = ENGINE_COMPONENT
SAFETY = "safety"
CONFIG = "config"
RBAC = "rbac"
NETWORK = "network"
CREDENTIALS = "credentials"
OPERATOR = "operator"

# Label keys (or key prefixes, ending in "/") that stay on the TradingSystem.
_NEVER_COPIED_PREFIXES = (
    "app.kubernetes.io/",  # ours to set; `instance` is ArgoCD's tracking label
    "argocd.argoproj.io/",
    "helm.sh/",
    "kopf.zalando.org/",
    "trading.quantzoo.io/",
)


def selector(system: str, component: str) -> dict[str, str]:
    """The labels a workload's selector matches on (immutable once created: keep them stable)."""
    return {NAME: APP_NAME, COMPONENT: component, SYSTEM: system}


def child_labels(
    system: str, component: str, owner_labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Labels of a child object: the TradingSystem's own labels that may travel, then ours."""
    labels = copyable_labels(owner_labels or {})
    labels.update(selector(system, component))
    labels[PART_OF] = APP_NAME
    labels[MANAGED_BY] = MANAGED_BY_VALUE
    return labels


def pod_labels(system: str, component: str) -> dict[str, str]:
    """Labels of a pod template. Only ours: a label edit on the TradingSystem must not restart a pod."""
    labels = selector(system, component)
    labels[PART_OF] = APP_NAME
    labels[MANAGED_BY] = MANAGED_BY_VALUE
    return labels


def copyable_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The TradingSystem labels that may be copied onto children (e.g. `team`, `cost-center`)."""
    return {k: v for k, v in labels.items() if not k.startswith(_NEVER_COPIED_PREFIXES)}
