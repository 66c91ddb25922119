"""The engine: a StatefulSet of exactly ONE replica.

At most one engine trades an account at any moment, rollouts included. A StatefulSet guarantees it: on
an update it deletes pod `<name>-engine-0`, waits until that pod is gone (its SIGTERM handling has
stopped new orders and cancelled working ones inside terminationGracePeriodSeconds), and only then
creates the new pod-0. A Deployment, even with `Recreate`, offers no such identity guarantee when a
node is lost, and `RollingUpdate` would overlap two trading pods.

What rolls the pod and what does not is decided in config_map.py (live vs restart fields).
"""

from __future__ import annotations

from typing import Any

from quantzoo_api import ENGINE_PORT
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV
from quantzoo_api.types import BrokerKind, MarketDataKind

from quantzoo_operator import labels, names
from quantzoo_operator.builders import account_env, config_map, placement
from quantzoo_operator.builders.admin_secret import TOKEN_KEY
from quantzoo_operator.builders.common import (
    BuildOptions,
    SecretMount,
    System,
    container_security_context,
    field_env,
    metadata,
    pod_security_context,
    resources,
    user_env,
)

REPLICAS = 1
STATE_DIR = "/var/lib/quantzoo"
CONFIG_PATH = f"{config_map.MOUNT_PATH}/{config_map.ENGINE_KEY}"
TERMINATION_GRACE_SECONDS = 30
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
ALPACA_CREDENTIAL_KEYS = ("ALPACA_API_KEY", "ALPACA_API_SECRET")
"""The keys of spec.broker.credentialsSecret; the engine reads them as `<KEY>_FILE`."""


def secret_mounts(system: System) -> list[SecretMount]:
    """The admin token and, for Alpaca, the broker credentials: mounted files, re-read on rotation."""
    spec = system.spec
    mounts = [
        SecretMount(
            "admin-token", names.engine_admin_secret(system.name), {TOKEN_KEY: ENGINE_ADMIN_TOKEN_ENV}
        )
    ]
    uses_alpaca = spec.broker.kind is BrokerKind.ALPACA or spec.market_data.kind is MarketDataKind.ALPACA
    if uses_alpaca and spec.broker.credentials_secret:
        mounts.append(
            SecretMount(
                "broker-credentials",
                spec.broker.credentials_secret,
                {key: key for key in ALPACA_CREDENTIAL_KEYS},
            )
        )
    return mounts


def env(system: System) -> list[dict[str, Any]]:
    spec = system.spec
    mounts = secret_mounts(system)
    out: list[dict[str, Any]] = [
        {"name": "QUANTZOO_CONFIG", "value": CONFIG_PATH},
        *(item for mount in mounts for item in mount.env()),
        field_env("POD_NAME", "metadata.name"),
        {"name": "QUANTZOO_WATCH_KUBERNETES", "value": "1"},
        {"name": "QUANTZOO_NAMESPACE", "value": system.namespace},
        {"name": "QUANTZOO_NAME", "value": system.name},
        {"name": "ENGINE_STATE_DIR", "value": STATE_DIR},
        *account_env.env(system),
    ]
    reserved = {item["name"] for item in out}.union(*(m.reserved_env() for m in mounts))
    return out + user_env(list(spec.engine.env), reserved)


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def pod_template(system: System, options: BuildOptions | None = None) -> dict[str, Any]:
    options = options or BuildOptions()
    spec = system.spec
    mounts = secret_mounts(system)
    return {
        "metadata": {
            "labels": labels.pod_labels(system.name, labels.ENGINE),
            "annotations": {config_map.RESTART_INPUTS_ANNOTATION: config_map.restart_inputs_hash(spec)},
        },
        "spec": {
            "serviceAccountName": names.engine(system.name),
            "automountServiceAccountToken": True,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": pod_security_context(),
            "containers": [
                {
                    "name": "engine",
                    **placement.image(spec.engine, options),
                    "command": ["quantzoo-engine"],
                    "ports": [{"name": "http", "containerPort": ENGINE_PORT, "protocol": "TCP"}],
                    "env": env(system),
                    "resources": resources(spec.engine.resources, DEFAULT_RESOURCES),
                    "securityContext": container_security_context(),
                    "startupProbe": _probe("/healthz", 2, 30),
                    "readinessProbe": _probe("/readyz", 5, 2),
                    "livenessProbe": _probe("/healthz", 10, 3),
                    "volumeMounts": [
                        {"name": "config", "mountPath": config_map.MOUNT_PATH, "readOnly": True},
                        {"name": "state", "mountPath": STATE_DIR},
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
                        "items": [{"key": config_map.ENGINE_KEY, "path": config_map.ENGINE_KEY}],
                    },
                },
                {"name": "state", "emptyDir": {"sizeLimit": "256Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                *(m.pod_volume() for m in mounts),
            ],
            **placement.engine(system, options),
        },
    }


def build(system: System, options: BuildOptions | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(system, names.engine(system.name), labels.ENGINE),
        "spec": {
            "replicas": REPLICAS,
            "serviceName": names.engine_headless(system.name),
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": labels.selector(system.name, labels.ENGINE)},
            "template": pod_template(system, options),
        },
    }
