"""Names of the children of a TradingSystem called `name`. Every other module asks here."""

from __future__ import annotations

from quantzoo_api import ENGINE_PORT

# A StatefulSet's pods carry `controller-revision-hash: <statefulset>-<10 chars>` (63 at most) and the
# headless Service `<name>-engine-headless` is a DNS label (63 at most): this bound keeps both valid.
MAX_NAME_LENGTH = 40


def engine(name: str) -> str:
    """StatefulSet, ClusterIP Service, ServiceAccount, Role, RoleBinding, PDB, NetworkPolicy."""
    return f"{name}-engine"


def engine_headless(name: str) -> str:
    return f"{name}-engine-headless"


def engine_pod(name: str, ordinal: int = 0) -> str:
    return f"{name}-engine-{ordinal}"


def safety(name: str) -> str:
    """Deployment, Service, ServiceAccount, Role, RoleBinding, NetworkPolicy."""
    return f"{name}-safety"


def config(name: str) -> str:
    return f"{name}-config"


def engine_admin_secret(name: str) -> str:
    return f"{name}-engine-admin"


def safety_token_secret(name: str) -> str:
    return f"{name}-safety-token"


def engine_url(name: str, namespace: str) -> str:
    """The engine's in-cluster URL (through its Service): what the safety service calls."""
    return f"http://{engine(name)}.{namespace}.svc:{ENGINE_PORT}"
