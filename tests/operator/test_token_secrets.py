"""The token Secrets of a new TradingSystem are created without reading them first, and one that exists
already is kept, its token checked (no cluster: a stand-in Kube that answers 409 for Secrets it holds and
does not model the API server beyond that)."""

from __future__ import annotations

import asyncio
from typing import Any

from quantzoo_operator.builders import BuildOptions, System
from quantzoo_operator.kube import KubeError
from quantzoo_operator.reconciler import Reconciler


class SecretsKube:
    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.reads: list[str] = []
        self.creates: list[str] = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str, **_: Any) -> Any:
        self.reads.append(name)
        return {"data": {"token": "dG9rZW4="}} if name in self.existing else None

    async def create(self, manifest: dict[str, Any], field_manager: str) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.creates.append(name)
        if name in self.existing:
            raise KubeError(409, "already exists")
        return manifest


def _system() -> System:
    body = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"symbols": ["AAPL"]},
    }
    return System.from_body(body)


def _ensure(kube: SecretsKube, *, create_first: bool) -> list[str]:
    reconciler = Reconciler(kube, None, None, BuildOptions())  # type: ignore[arg-type]
    return asyncio.run(reconciler.ensure_secrets(_system(), create_first=create_first))


def test_a_new_systems_secrets_are_created_without_a_read() -> None:
    kube = SecretsKube(set())
    assert _ensure(kube, create_first=True) == ["demo-engine-admin", "demo-safety-token"]
    assert kube.reads == []


def test_an_existing_secret_is_kept_either_way() -> None:
    for create_first in (True, False):
        kube = SecretsKube({"demo-engine-admin"})
        assert _ensure(kube, create_first=create_first) == ["demo-safety-token"]
        assert "demo-engine-admin" in kube.reads
