"""All Kubernetes access of the safety service and the kubectl plugin: read a TradingSystem, merge-patch
its spec, read its status, list its engine pods (a direct halt reaches each one by pod IP). Nothing else
in the package imports the kubernetes client's API classes.

Errors come out as three exceptions that say what the caller should do:
`ApiServerUnreachable` (no answer in time, connection refused, 5xx/429: the direct engine path must
act), `TradingSystemNotFound`, `KubeRefused` (the API server answered no: forbidden, CEL rule, conflict;
`message` is the API server's own wording).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.engine_pods import engine_pod_selector

MERGE_PATCH = "application/merge-patch+json"
T = TypeVar("T")


class KubeError(Exception):
    """Base of the errors below; str() is safe to show to a user (no credentials, no request)."""


class ApiServerUnreachable(KubeError):
    pass


class TradingSystemNotFound(KubeError):
    pass


class KubeRefused(KubeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KubeConflict(KubeRefused):
    """409: the object changed since it was read (resourceVersion precondition failed)."""


def api_message(exc: ApiException) -> str:
    """The API server's own message from a Status body, else its reason phrase."""
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except (TypeError, ValueError):
        pass
    return f"HTTP {exc.status} {exc.reason or ''}".strip()


def translate(exc: BaseException, what: str) -> KubeError:
    """Map a kubernetes-client / urllib3 / socket error onto the three outcomes callers act on."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        if status == 0 or status >= 500 or status == 429:
            return ApiServerUnreachable(
                f"API server error on {what}: {api_message(exc) if status else exc.reason}"
            )
        if status == 404:
            return TradingSystemNotFound(f"{what}: not found")
        if status == 409:
            return KubeConflict(status, api_message(exc))
        return KubeRefused(status, api_message(exc))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ApiServerUnreachable(f"API server did not answer {what} in time")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return ApiServerUnreachable(f"API server unreachable on {what}: {type(exc).__name__}")
    if isinstance(exc, KubeError):
        return exc
    return ApiServerUnreachable(f"API server call {what} failed: {type(exc).__name__}")


def api_client_from_environment(
    kubeconfig: str | None = None, context: str | None = None, *, pool_size: int | None = None
) -> k8s.ApiClient:
    """An ApiClient from KUBECONFIG / ~/.kube/config, or the in-cluster service account.

    One urllib3 retry (a stale pooled connection), no more: callers hold their own deadline.
    """
    cfg = k8s.Configuration()
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not kubeconfig
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except (ConfigException, OSError, TypeError) as exc:
        raise ApiServerUnreachable(f"no usable Kubernetes configuration: {exc}") from None
    cfg.retries = 1
    if pool_size:  # connections kept open per host (the client's default, 4, for one caller at a time)
        cfg.connection_pool_maxsize = pool_size
    return k8s.ApiClient(cfg)


# How often a read-build-patch is retried when the object changed in between (409 on its resourceVersion).
CONFLICT_RETRIES = 3


def read_build_patch(
    read: Callable[[], dict[str, Any]],
    patch: Callable[[dict[str, Any], str | None], dict[str, Any]],
    build: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read, build the patch from what is there (None: nothing to do), patch with the read's
    resourceVersion as precondition; on 409 read again, at most CONFLICT_RETRIES more times.
    Returns (the object after, the patch sent or None)."""
    for attempt in range(CONFLICT_RETRIES + 1):
        obj = read()
        body = build(obj)
        if body is None:
            return obj, None
        try:
            return patch(body, obj["metadata"].get("resourceVersion")), body
        except KubeConflict:
            if attempt == CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class KubeCalls:
    """Synchronous API calls with one timeout, failures translated into our KubeErrors."""

    def __init__(
        self, api_client: k8s.ApiClient, *, request_timeout: float | None = None, field_manager: str
    ):
        self._api = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._timeout = request_timeout
        self.field_manager = field_manager

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._timeout:
            kwargs["_request_timeout"] = self._timeout
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise translate(exc, what) from None


class TradingSystems(KubeCalls):
    """Synchronous access to TradingSystem objects (the kubectl plugin, and the core of the async client)."""

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            f"get tradingsystem {namespace}/{name}",
            self._api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )

    def list(self, namespace: str) -> list[dict[str, Any]]:
        result = self._call(
            f"list tradingsystems in {namespace}",
            self._api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
        )
        return sorted(result.get("items", []), key=lambda o: o["metadata"]["name"])

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods as plain JSON (the shape `quantzoo_api.engine_pods` reads), not the client's models."""
        response = self._call(
            f"list pods {label_selector} in {namespace}",
            self._core.list_namespaced_pod,
            namespace,
            label_selector=label_selector,
            _preload_content=False,
        )
        try:
            return list(json.loads(response.data).get("items") or [])
        except (TypeError, ValueError, AttributeError):
            raise ApiServerUnreachable(f"unreadable pod list in {namespace}") from None

    def merge_patch(
        self, namespace: str, name: str, patch: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """JSON merge patch; with resource_version, refused (KubeConflict) if the object changed since."""
        body = dict(patch)
        if resource_version:
            body["metadata"] = {**body.get("metadata", {}), "resourceVersion": resource_version}
        return self._call(
            f"patch tradingsystem {namespace}/{name}",
            self._api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            field_manager=self.field_manager,
            _content_type=MERGE_PATCH,
        )


class TradingSystemClient:
    """The safety service's TradingSystem, with a hard deadline on every call.

    Calls run in a small pool of their own so a hung API server cannot starve anything else; after the
    deadline the caller gets ApiServerUnreachable (the abandoned call finishes or fails on its own).
    """

    def __init__(
        self,
        api_client: k8s.ApiClient | None,
        namespace: str,
        name: str,
        *,
        timeout: float = 2.0,
        config_error: str | None = None,
        field_manager: str = "quantzoo-safety",
    ) -> None:
        self.namespace, self.name, self.timeout = namespace, name, timeout
        self._config_error = config_error
        self._systems = (
            TradingSystems(api_client, request_timeout=timeout, field_manager=field_manager)
            if api_client
            else None
        )
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kube")

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._systems is None:
            raise ApiServerUnreachable(self._config_error or "no Kubernetes client")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), self.timeout)
        except TimeoutError:
            raise ApiServerUnreachable(f"API server did not answer within {self.timeout:g}s") from None

    async def get(self) -> dict[str, Any]:
        systems = self._systems
        return await self._run(lambda: systems.get(self.namespace, self.name))

    async def merge_patch_spec(
        self, patch: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        if set(patch) - {"spec"}:
            raise ValueError("only spec is patched through this client")
        systems = self._systems
        return await self._run(
            lambda: systems.merge_patch(self.namespace, self.name, patch, resource_version=resource_version)
        )

    async def list_engine_pods(self) -> list[dict[str, Any]]:
        """The TradingSystem's engine pods, whatever their readiness (RBAC: pods list in the namespace)."""
        systems = self._systems
        selector = engine_pod_selector(self.name)
        return await self._run(lambda: systems.list_pods(self.namespace, selector))

    async def read_status(self) -> dict[str, Any]:
        return (await self.get()).get("status") or {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
