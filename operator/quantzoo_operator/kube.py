"""Kubernetes API access for the operator's own code (kopf has its own client for its watches).

Raw JSON over the official client's transport: no model (de)serialisation, one small table of the kinds
the operator touches. Every call is blocking, so it runs in a thread pool; the kill-switch path has a
pool AND a connection pool of its own, so a burst of reconcile traffic can never queue a kill-switch push
(listing engine pods, reading the admin token, writing the acknowledgement) behind it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from kubernetes import client, config
from quantzoo_api import API_VERSION, GROUP, PLURAL, VERSION
from quantzoo_api.accounts import ACCOUNT_KIND, ACCOUNT_PLURAL

T = TypeVar("T")

PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Secret"): "secrets",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    (API_VERSION, "TradingSystem"): PLURAL,
    (API_VERSION, ACCOUNT_KIND): ACCOUNT_PLURAL,
}


APPLY_PATCH = "application/apply-patch+yaml"

# Characters the API server's YAML decoder refuses raw in an apply body: DEL, the C1 controls, U+FFFE/FFFF.
_YAML_UNSAFE_RAW = re.compile("[\x7f-\x9f\ufffe\uffff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def apply_body(obj: Any) -> bytes:
    """JSON for a server-side apply (parsed as YAML by the API server). `json.dumps` escapes a character
    outside the BMP (an emoji in a kill-switch reason) as a surrogate pair, which the YAML decoder refuses
    ("invalid Unicode character escape code"): write such characters raw in UTF-8 instead, and escape only
    what YAML refuses raw."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = _LONE_SURROGATE.sub("\ufffd", text)  # never from the API server (Go writes U+FFFD); be safe
    return _YAML_UNSAFE_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


class KubeError(Exception):
    def __init__(self, status: int, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.causes = causes  # the Status's details.causes[].reason, e.g. NamespaceTerminating


def status_causes(payload: Any) -> tuple[str, ...]:
    """The cause types of a Kubernetes Status body (empty when it has none)."""
    details = payload.get("details") if isinstance(payload, dict) else None
    causes = (details or {}).get("causes") or []
    return tuple(str(c.get("reason") or "") for c in causes if isinstance(c, dict))


def new_api_client(pool_size: int = 16) -> client.ApiClient:
    """A client from KUBECONFIG (or ~/.kube/config), else the in-cluster ServiceAccount (whose token is
    re-read when it rotates)."""
    cfg = client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    plural = PLURALS[(api_version, kind)]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{quote(namespace)}/{plural}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{quote(name)}"


@dataclass(frozen=True)
class Applied:
    obj: dict[str, Any]
    created: bool


class Kube:
    def __init__(
        self,
        api_factory: Callable[[], client.ApiClient] = new_api_client,
        *,
        workers: int = 8,
        kill_workers: int = 4,
        request_timeout: float = 30.0,
        kill_request_timeout: float = 5.0,
    ) -> None:
        self.api = api_factory()
        self.kill_api = api_factory()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kube")
        self._kill_pool = ThreadPoolExecutor(kill_workers, thread_name_prefix="kube-kill")
        self._timeout = request_timeout
        self._kill_timeout = kill_request_timeout

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._kill_pool.shutdown(wait=False, cancel_futures=True)
        for api in (self.api, self.kill_api):
            api.close()

    # -- blocking primitive ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kill: bool = False,
    ) -> dict[str, Any]:
        api = self.kill_api if kill else self.api
        if content_type == APPLY_PATCH and body is not None:
            body = apply_body(body)  # bytes are sent as they are
        method, url, headers, data, post = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(
            method, url, headers, data, post, _request_timeout=self._kill_timeout if kill else self._timeout
        )
        resp.read()
        payload = json.loads(resp.data) if resp.data else {}
        if not 200 <= resp.status < 300:
            message = payload.get("message") if isinstance(payload, dict) else None
            raise KubeError(resp.status, message or resp.reason or "", status_causes(payload))
        payload["_status"] = resp.status
        return payload

    async def run(self, fn: Callable[..., T], *args: Any, kill: bool = False, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._kill_pool if kill else self._pool, lambda: fn(*args, **kwargs)
        )

    # -- operations --------------------------------------------------------------------------------
    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, *, kill: bool = False
    ) -> dict[str, Any] | None:
        try:
            obj = await self.run(
                self.request, "GET", object_path(api_version, kind, namespace, name), kill=kill
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        obj.pop("_status", None)
        return obj

    async def get_tradingsystem(
        self, namespace: str, name: str, *, kill: bool = False
    ) -> dict[str, Any] | None:
        return await self.get(API_VERSION, "TradingSystem", namespace, name, kill=kill)

    async def merge_patch_tradingsystem(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, kill: bool = True
    ) -> dict[str, Any]:
        """JSON merge patch of a TradingSystem (the kill path: re-engaging from a tombstone)."""
        obj = await self.run(
            self.request,
            "PATCH",
            object_path(API_VERSION, "TradingSystem", namespace, name),
            body=dict(patch),
            content_type="application/merge-patch+json",
            kill=kill,
        )
        obj.pop("_status", None)
        return obj

    async def apply(self, manifest: Mapping[str, Any], field_manager: str) -> Applied:
        """Server-side apply with `force`: the operator owns every field it sets, whoever edited it."""
        meta = manifest["metadata"]
        obj = await self.run(
            self.request,
            "PATCH",
            object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]),
            query=[("fieldManager", field_manager), ("force", "true")],
            body=dict(manifest),
            content_type=APPLY_PATCH,
        )
        created = obj.pop("_status", 200) == 201
        return Applied(obj, created)

    async def apply_status(
        self, namespace: str, name: str, body: Mapping[str, Any], field_manager: str, *, kill: bool = False
    ) -> dict[str, Any]:
        """Server-side apply on the TradingSystem's status subresource."""
        obj = await self.run(
            self.request,
            "PATCH",
            object_path(API_VERSION, "TradingSystem", namespace, name) + "/status",
            query=[("fieldManager", field_manager), ("force", "true")],
            body=dict(body),
            content_type=APPLY_PATCH,
            kill=kill,
        )
        obj.pop("_status", None)
        return obj

    async def create(self, manifest: Mapping[str, Any], field_manager: str) -> dict[str, Any]:
        meta = manifest["metadata"]
        obj = await self.run(
            self.request,
            "POST",
            collection_path(manifest["apiVersion"], manifest["kind"], meta["namespace"]),
            query=[("fieldManager", field_manager)],
            body=dict(manifest),
        )
        obj.pop("_status", None)
        return obj

    async def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str, *, kill: bool = False
    ) -> list[dict[str, Any]]:
        obj = await self.run(
            self.request,
            "GET",
            collection_path(api_version, kind, namespace),
            query=[("labelSelector", label_selector)],
            kill=kill,
        )
        return list(obj.get("items") or [])

    async def list_pods(
        self, namespace: str, label_selector: str, *, kill: bool = False
    ) -> list[dict[str, Any]]:
        obj = await self.run(
            self.request,
            "GET",
            collection_path("v1", "Pod", namespace),
            query=[("labelSelector", label_selector)],
            kill=kill,
        )
        return list(obj.get("items") or [])

    def list_tradingsystems(self, namespace: str | None) -> dict[str, Any]:
        """Blocking: the propagator's watch thread lists before it watches."""
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
            if namespace
            else f"/apis/{GROUP}/{VERSION}/{PLURAL}"
        )
        obj = self.request("GET", path, kill=True)
        obj.pop("_status", None)
        return obj
