"""schemathesis against the safety service's OpenAPI schema: every operation, with a valid token, a wrong
one and none; in standalone mode (QUANTZOO_KUBERNETES=0), and in Kubernetes mode against an in-memory
TradingSystem and against the session's real kube-apiserver (marked `cluster`).

Behind the safety app (in process, TestClient) runs a REAL engine app, served by uvicorn on a loopback
port in a thread, so every activate/deactivate really halts and releases an engine through its admin
API. The TradingSystem is either the real one (CRD, CEL rules, resourceVersion preconditions on a real
API server) or the in-memory STAND-IN from tests/safety, which keeps a fuzz run possible without the
control plane (`pytest -m "not cluster"`).

Checks: no 5xx, every answer documented, invalid input refused with a 4xx, and a rejected request
changes nothing: not the TradingSystem, not the service's own record of the switch, not the engine,
and the audit log gains exactly one entry, the record of the refusal (every call is audited, by design).
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fuzz_support import (
    AUTH_VARIANTS,
    FUZZ_SETTINGS,
    apply_auth,
    load_schema,
    no_state_change_on_rejection,
    send,
)
from kubernetes import client as k8s
from pydantic import SecretStr
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_engine.app import create_app as create_engine_app
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.settings import EngineSettings
from quantzoo_safety.app import create_app
from quantzoo_safety.kube import TradingSystemClient
from quantzoo_safety.settings import Settings

from tests.engine.engine_helpers import PRICES, Bars, make_spec
from tests.safety.safety_fake_kube import FakeTradingSystemClient

TOKEN = "safety-token-for-fuzzing"
ENGINE_TOKEN = "engine-admin-token-for-fuzzing"
T = TypeVar("T")


def safety_settings(
    engine_url: str, audit_path: Path, *, kubernetes: bool, namespace: str = "trading"
) -> Settings:
    return Settings(
        namespace=namespace,
        name="demo",
        engine_url=engine_url,
        engine_admin_token=ENGINE_TOKEN,
        api_token=TOKEN,
        kubernetes_enabled=kubernetes,
        audit_log_path=str(audit_path),
        kube_timeout_seconds=2.0,
        engine_timeout_seconds=2.0,
    )


schema = load_schema(
    create_app(
        safety_settings("http://127.0.0.1:1", Path("/nonexistent"), kubernetes=False),
        kube=None,
        start_watchdog=False,
    ).openapi()
)


class EngineServer:
    """The real engine app served by uvicorn on a loopback port, its event loop in a thread of its own
    (so the test can read and feed the engine in that loop)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> EngineServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("engine did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            result = fn()
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    spec = make_spec(risk={"staleDataSeconds": 86_400})
    settings = EngineSettings(
        admin_token=SecretStr(ENGINE_TOKEN),
        state_dir=tmp_path_factory.mktemp("engine-behind-safety"),
        pod_name="fuzz-engine-0",
        spec=spec,
    )
    app = create_engine_app(settings, with_feed=False, clock=ManualClock())
    with EngineServer(app) as server:
        trading = app.state.engine
        bars = Bars()
        for symbol, price in PRICES.items():
            server.call(lambda s=symbol, p=price: trading.on_bar(bars(s, p)))
        yield server


@dataclass
class Safety:
    mode: str
    client: TestClient
    read_tradingsystem: Callable[[], Any]
    audit_path: Path


def no_tradingsystem() -> Generator[tuple[str, Any, Callable[[], Any]]]:
    yield "trading", None, lambda: None


def in_memory_tradingsystem() -> Generator[tuple[str, Any, Callable[[], Any]]]:
    kube = FakeTradingSystemClient("trading", "demo")
    yield "trading", kube, lambda: {"object": copy.deepcopy(kube.obj), "patches": len(kube.patches)}


def real_tradingsystem(api: k8s.ApiClient) -> Generator[tuple[str, Any, Callable[[], Any]]]:
    namespace = f"fuzz-{uuid.uuid4().hex[:8]}"
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": "demo"},
        "spec": {},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def read() -> Any:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "demo")
        return {"spec": obj["spec"], "resourceVersion": obj["metadata"]["resourceVersion"]}

    kube = TradingSystemClient(api, namespace, "demo", timeout=5.0)
    try:
        yield namespace, kube, read
    finally:
        kube.close()
        core.delete_namespace(namespace)


@pytest.fixture(
    scope="module",
    params=["standalone", "in-memory-tradingsystem", pytest.param("apiserver", marks=pytest.mark.cluster)],
)
def safety(
    request: pytest.FixtureRequest, engine: EngineServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Safety]:
    mode = request.param
    audit_path = tmp_path_factory.mktemp(f"safety-{mode}") / "audit.jsonl"
    if mode == "standalone":
        tradingsystems = no_tradingsystem()
    elif mode == "apiserver":
        tradingsystems = real_tradingsystem(request.getfixturevalue("kube_api"))
    else:
        tradingsystems = in_memory_tradingsystem()
    namespace, kube, read = next(tradingsystems)
    try:
        settings = safety_settings(engine.url, audit_path, kubernetes=kube is not None, namespace=namespace)
        app = create_app(settings, kube=kube, start_watchdog=False)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Safety(mode, client, read, audit_path)
    finally:
        tradingsystems.close()


def audit_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def snapshot(safety: Safety, engine: EngineServer) -> dict[str, Any]:
    """What a refused request must leave as it was."""
    ctx = safety.client.app.state.safety  # type: ignore[attr-defined]
    killswitch = safety.client.portal.call(  # type: ignore[union-attr]
        lambda: {"local": copy.deepcopy(ctx.killswitch.local), "pending": repr(ctx.killswitch.pending)}
    )
    trading = engine.app.state.engine

    def engine_view() -> dict[str, Any]:
        state = trading.state_view()
        return {
            "trading_state": state["trading_state"],
            "kill_switch": state["kill_switch"],
            "orders": state["orders"],
            "positions": trading.positions_view()["positions"],
        }

    return {
        "tradingsystem": safety.read_tradingsystem(),
        "safety_kill_switch": killswitch,
        "engine": engine.call(engine_view),
        "audit": audit_entries(safety.audit_path),
    }


def drop_rejection_record(before: dict[str, Any], after: dict[str, Any], case: Any, status: int) -> None:
    """Every call is audited: a refusal adds exactly one entry, saying so. Take it out of `after` (it is
    asserted here), so the check compares everything else."""
    added = after["audit"][len(before["audit"]) :]
    if after["audit"][: len(before["audit"])] != before["audit"] or len(added) != 1:
        return  # the check will show the difference
    entry = added[0]
    assert entry["path"] == case.operation.path
    assert entry["http_status"] == status
    assert entry["result"] == "refused"
    after["audit"] = after["audit"][:-1]


@pytest.mark.parametrize("auth", AUTH_VARIANTS)
@schema.parametrize()
@FUZZ_SETTINGS
def test_safety_api(case: Any, auth: str, safety: Safety, engine: EngineServer) -> None:
    apply_auth(case, auth, TOKEN)
    before = snapshot(safety, engine)
    response = send(safety.client, case, f"safety ({safety.mode})")
    after = snapshot(safety, engine)
    if 400 <= response.status_code < 500:
        drop_rejection_record(before, after, case, response.status_code)
    case.validate_response(response, additional_checks=[no_state_change_on_rejection(before, after)])
