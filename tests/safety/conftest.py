"""Fixtures for the safety service's tests: a stand-in engine on loopback (one per session, reset per
test), a stand-in TradingSystem (in memory), and the app under test in a TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from quantzoo_safety.app import create_app
from quantzoo_safety.context import SafetyContext
from quantzoo_safety.settings import Settings
from safety_fake_engine import FakeEngineServer
from safety_fake_kube import FakeTradingSystemClient
from safety_support import ENGINE_TOKEN, TOKEN


@pytest.fixture(scope="session")
def fake_engine_server() -> Iterator[FakeEngineServer]:
    server = FakeEngineServer(admin_token=ENGINE_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def engine(fake_engine_server: FakeEngineServer) -> FakeEngineServer:
    fake_engine_server.engine.reset()
    return fake_engine_server


@pytest.fixture
def fake_kube() -> FakeTradingSystemClient:
    return FakeTradingSystemClient("trading", "demo")


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def make_settings(engine: FakeEngineServer, audit_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "namespace": "trading",
            "name": "demo",
            "engine_url": engine.url,
            "engine_admin_token": ENGINE_TOKEN,
            "api_token": TOKEN,
            "audit_log_path": str(audit_path),
            "kube_timeout_seconds": 1.0,
            "engine_timeout_seconds": 1.0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


class SafetyClient(TestClient):
    @property
    def ctx(self) -> SafetyContext:
        return self.app.state.safety  # type: ignore[attr-defined]

    def auth(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Callable[..., AbstractContextManager]:
    @contextmanager
    def make(kube: Any = None, *, start_watchdog: bool = False, **settings: Any) -> Iterator[SafetyClient]:
        if kube is None:
            settings.setdefault("kubernetes_enabled", False)
        app = create_app(make_settings(**settings), kube=kube, start_watchdog=start_watchdog)
        with SafetyClient(app, raise_server_exceptions=False) as client:
            yield client

    return make


@pytest.fixture
def client(make_client, fake_kube) -> Iterator[SafetyClient]:
    """The safety service in Kubernetes mode against the stand-in TradingSystem and engine."""
    with make_client(fake_kube) as c:
        yield c


@pytest.fixture
def standalone(make_client) -> Iterator[SafetyClient]:
    """The safety service with QUANTZOO_KUBERNETES=0 against the stand-in engine."""
    with make_client(None) as c:
        yield c
