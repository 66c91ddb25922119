"""What every builder shares: the owning TradingSystem, owner references, metadata, and the security
context that passes the `restricted` Pod Security profile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quantzoo_api import API_VERSION, KIND
from quantzoo_api.accounts import AccountLimits
from quantzoo_api.types import EnvVar, Placement, TradingSystemSpec, parse_spec

from quantzoo_operator import labels
from quantzoo_operator.settings import DEFAULT_IMAGE

RUN_AS_USER = 10001
"""Numeric, non-root: `runAsNonRoot` can only be verified by the kubelet for a numeric user."""


@dataclass(frozen=True)
class System:
    """The identity and spec of one TradingSystem, as the builders need them."""

    namespace: str
    name: str
    uid: str
    spec: TradingSystemSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    generation: int = 0
    # The TradingAccount it trades in (spec.accountRef, resolved by accounts.py; spec then carries the
    # account's broker and mode).
    account_name: str | None = None
    account_limits: AccountLimits | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> System:
        """From a TradingSystem as the API server returns it (raises ValueError on a spec it cannot read)."""
        meta = body.get("metadata") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            spec=parse_spec(body.get("spec")),
            labels=dict(meta.get("labels") or {}),
            generation=int(meta.get("generation") or 0),
        )


@dataclass(frozen=True)
class BuildOptions:
    """Cluster-level inputs that are not in the TradingSystem (from the operator's settings)."""

    operator_namespace: str | None = None
    """Where the operator runs: only its pods there may reach the engine's admin port. None: any namespace."""
    monitoring_namespaces: tuple[str, ...] = ()
    """Namespaces whose pods may scrape /metrics on the engine and safety ports."""
    default_image: str = DEFAULT_IMAGE
    """Image of engine and safety when the TradingSystem sets none (the chart's own image)."""
    default_image_pull_policy: str = "IfNotPresent"
    operand_placement: Placement = field(default_factory=Placement)
    """Chart-level defaults of each placement field a TradingSystem leaves unset."""


def owner_reference(system: System) -> dict[str, Any]:
    """Makes the TradingSystem the controller of a child: garbage collection deletes the child with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": system.name,
        "uid": system.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(system: System, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": system.namespace,
        "labels": labels.child_labels(system.name, component, system.labels),
        "ownerReferences": [owner_reference(system)],
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


SECRETS_ROOT = "/var/run/secrets/quantzoo"
SECRET_FILE_MODE = 0o440
"""Owner and group (fsGroup) may read; the container's user is both."""


@dataclass(frozen=True)
class SecretMount:
    """A Secret mounted read-only, each key a file; `<ENV>_FILE` env vars point at the files.

    Env vars from `secretKeyRef` are frozen when the container starts; a mounted Secret is updated in
    place by the kubelet, and the services re-read the files, so a rotation needs no restart.
    """

    volume: str
    secret: str
    keys: Mapping[str, str]
    """Secret key -> env var name; the env var `<name>_FILE` gets the file's path."""

    @property
    def mount_path(self) -> str:
        return f"{SECRETS_ROOT}/{self.volume}"

    def env(self) -> list[dict[str, Any]]:
        return [
            {"name": f"{var}_FILE", "value": f"{self.mount_path}/{key}"} for key, var in self.keys.items()
        ]

    def volume_mount(self) -> dict[str, Any]:
        return {"name": self.volume, "mountPath": self.mount_path, "readOnly": True}

    def pod_volume(self) -> dict[str, Any]:
        return {
            "name": self.volume,
            "secret": {
                "secretName": self.secret,
                "items": [{"key": key, "path": key} for key in self.keys],
                "defaultMode": SECRET_FILE_MODE,
            },
        }

    def reserved_env(self) -> set[str]:
        """The plain names too: a spec's extra env cannot set a token beside the file."""
        return {*self.keys.values(), *(f"{var}_FILE" for var in self.keys.values())}


def field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def user_env(env: list[EnvVar], reserved: set[str]) -> list[dict[str, Any]]:
    """The spec's extra env, minus names the operator sets itself (a token cannot be overridden)."""
    out = []
    for var in env:
        if var.name in reserved:
            continue
        item: dict[str, Any] = {"name": var.name}
        if var.value_from is not None:
            item["valueFrom"] = var.value_from
        else:
            item["value"] = var.value or ""
        out.append(item)
    return out


def resources(spec_resources: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    return dict(spec_resources) if spec_resources else {k: dict(v) for k, v in default.items()}
