"""The safety service: a Deployment of one pod, independent of the engine (its own ServiceAccount, its
own token), so it can halt the engine directly when the API server is down.

Two safety pods for a moment during a rollout are harmless (activations are idempotent), so it rolls
with a surge and never leaves the TradingSystem without its safety net. Its settings (auto-trip limits)
are read live from the TradingSystem, so the pod template changes only with image, resources and env.
"""

from __future__ import annotations

from typing import Any

from quantzoo_api import SAFETY_PORT
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV, SAFETY_API_TOKEN_ENV

from quantzoo_operator import labels, names
from quantzoo_operator.builders import config_map, placement
from quantzoo_operator.builders.admin_secret import TOKEN_KEY
from quantzoo_operator.builders.common import (
    BuildOptions,
    SecretMount,
    System,
    container_security_context,
    metadata,
    pod_security_context,
    resources,
    user_env,
)

CONFIG_PATH = f"{config_map.MOUNT_PATH}/{config_map.SAFETY_KEY}"
DEFAULT_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


def secret_mounts(system: System) -> list[SecretMount]:
    """Its own API token and the engine's admin token (for direct halts): files, re-read on rotation."""
    return [
        SecretMount("api-token", names.safety_token_secret(system.name), {TOKEN_KEY: SAFETY_API_TOKEN_ENV}),
        SecretMount(
            "engine-admin-token", names.engine_admin_secret(system.name), {TOKEN_KEY: ENGINE_ADMIN_TOKEN_ENV}
        ),
    ]


PENDING_FILE = "/tmp/pending-engagement.json"  # noqa: S108 - the pod's own emptyDir
# The durable audit (append-only JSONL, rolled at a bounded size) on the pod's emptyDir: it outlives a
# container restart, and the safety service reads its history back on start.
AUDIT_FILE = "/tmp/audit.jsonl"  # noqa: S108 - the pod's own emptyDir


def env(system: System) -> list[dict[str, Any]]:
    mounts = secret_mounts(system)
    out: list[dict[str, Any]] = [
        *(item for mount in mounts for item in mount.env()),
        {"name": "ENGINE_URL", "value": names.engine_url(system.name, system.namespace)},
        {"name": "QUANTZOO_NAMESPACE", "value": system.namespace},
        {"name": "QUANTZOO_NAME", "value": system.name},
        {"name": "QUANTZOO_CONFIG", "value": CONFIG_PATH},
        # On the pod's emptyDir: a pending direct halt outlives a container restart.
        {"name": "SAFETY_PENDING_FILE", "value": PENDING_FILE},
        {"name": "SAFETY_AUDIT_LOG", "value": AUDIT_FILE},
    ]
    reserved = {item["name"] for item in out}.union(*(m.reserved_env() for m in mounts))
    return out + user_env(list(system.spec.safety.env), reserved)


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def build(system: System, options: BuildOptions | None = None) -> dict[str, Any]:
    options = options or BuildOptions()
    spec = system.spec.safety
    mounts = secret_mounts(system)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(system, names.safety(system.name), labels.SAFETY),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": labels.selector(system.name, labels.SAFETY)},
            "template": {
                "metadata": {"labels": labels.pod_labels(system.name, labels.SAFETY)},
                "spec": {
                    "serviceAccountName": names.safety(system.name),
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": pod_security_context(),
                    "containers": [
                        {
                            "name": "safety",
                            **placement.image(spec, options),
                            "command": ["quantzoo-safety"],
                            "ports": [{"name": "http", "containerPort": SAFETY_PORT, "protocol": "TCP"}],
                            "env": env(system),
                            "resources": resources(spec.resources, DEFAULT_RESOURCES),
                            "securityContext": container_security_context(),
                            "readinessProbe": _probe("/healthz", 5, 2),
                            "livenessProbe": _probe("/healthz", 10, 3),
                            "volumeMounts": [
                                {"name": "config", "mountPath": config_map.MOUNT_PATH, "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir
                                *(m.volume_mount() for m in mounts),
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {
                                "name": names.config(system.name),
                                "items": [{"key": config_map.SAFETY_KEY, "path": config_map.SAFETY_KEY}],
                            },
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        *(m.pod_volume() for m in mounts),
                    ],
                    **placement.safety(system, options),
                },
            },
        },
    }
