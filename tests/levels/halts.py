"""Test helpers for the levels of the kill switch (issue #13): TradingHalts (cluster-scoped) and the
level objects' kill switches, written as our clients write them (quantzoo_api.killswitch)."""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes import client
from quantzoo_api import GROUP, VERSION
from quantzoo_api.accounts import ACCOUNT_PLURAL
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for
from quantzoo_api.levels import HALT_PLURAL, KillLevel, halt_body


def objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_halt(api: client.ApiClient, level: KillLevel, namespace: str | None = None) -> str:
    body = halt_body(level, namespace)
    objects(api).create_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, body)
    return body["metadata"]["name"]


def get_halt(api: client.ApiClient, name: str) -> dict[str, Any]:
    return objects(api).get_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name)


def engage_halt(api: client.ApiClient, name: str, reason: str = "levels test") -> dict[str, Any]:
    """One write: engages every system the halt covers."""
    patch = engage_patch(reason=reason, operator="levels-test")
    return objects(api).patch_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name, patch)


def release_halt(api: client.ApiClient, name: str) -> dict[str, Any]:
    current = kill_switch_of(get_halt(api, name))
    patch = release_patch_for(current, operator="levels-test", reason="drill over")
    return objects(api).patch_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name, patch)


def delete_halt(api: client.ApiClient, name: str) -> None:
    """Released first (an engaged halt may be refused deletion by the chart's policy)."""
    with contextlib.suppress(client.ApiException):
        if kill_switch_of(get_halt(api, name)).get("engaged"):
            release_halt(api, name)
    with contextlib.suppress(client.ApiException):
        objects(api).delete_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name)


def create_account(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingAccount",
        "metadata": {"name": name},
        "spec": {},
    }
    return objects(api).create_namespaced_custom_object(GROUP, VERSION, namespace, ACCOUNT_PLURAL, body)


def engage_account(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    patch = engage_patch(reason="levels test", operator="levels-test")
    return objects(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, ACCOUNT_PLURAL, name, patch)
