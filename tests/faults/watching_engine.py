"""Engines as real processes that watch their TradingSystem on the real API server (no operator), each
with its own route to the API server, optionally through a DelayProxy that can black-hole it.

    ts = create_trading_system(api, namespace, "acct")
    engine = start_watching_engine(tmp_path, kubeconfig_via(cluster.kubeconfig, proxy, tmp_path), ...)
    engine.state()["trading_state"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION

from hack.devcluster.podrunner import free_port
from tests.faults.delay_proxy import DelayProxy

TOKEN = "partition-test-admin-token"
# A fast simulated feed and a strategy that never trades: every order at the broker is one the test sent.
SPEC: dict[str, Any] = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 7, "intervalSeconds": 0.05},
    "risk": {"maxOrdersPerSecond": 50, "maxOrdersPerMinute": 3000, "staleDataSeconds": 30},
}


def create_trading_system(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": name, "namespace": namespace},
        "spec": SPEC,
    }
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def kubeconfig_via(kubeconfig: Path, proxy: DelayProxy, path: Path) -> Path:
    """The same credentials, with the API server reached through the proxy (TLS passes through it)."""
    cfg = json.loads(kubeconfig.read_text())
    for entry in cfg["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path.write_text(json.dumps(cfg))
    return path


def api_server_port(kubeconfig: Path) -> int:
    cfg = json.loads(kubeconfig.read_text())
    return int(cfg["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])


@dataclass
class WatchingEngine:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def state(self) -> dict[str, Any]:
        return httpx.get(self.url + "/state", timeout=2).json()

    def place_order(self, **order: Any) -> httpx.Response:
        """A market buy of 1 AAPL unless `order` says otherwise (e.g. type="limit", limit_price=1.0)."""
        return httpx.post(
            self.url + "/orders",
            json={"symbol": "AAPL", "side": "buy", "quantity": 1, "type": "market", **order},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )

    def positions(self) -> dict[str, float]:
        rows = httpx.get(self.url + "/positions/current", timeout=2).json()["positions"]
        return {row["symbol"]: row["quantity"] for row in rows}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_watching_engine(
    tmp_path: Path, kubeconfig: Path, namespace: str, name: str, pod: str, env: dict[str, str]
) -> WatchingEngine:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTZOO_", "ENGINE_", "ALPACA_"))}
    base.update(
        {
            "ENGINE_ADMIN_TOKEN": TOKEN,
            "ENGINE_STATE_DIR": str(tmp_path / f"{pod}-state"),
            "POD_NAME": pod,
            "QUANTZOO_WATCH_KUBERNETES": "1",
            "QUANTZOO_NAMESPACE": namespace,
            "QUANTZOO_NAME": name,
            "KUBECONFIG": str(kubeconfig),
            "LOG_LEVEL": "INFO",
            **env,
        }
    )
    log = tmp_path / f"{pod}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantzoo_engine", "--host", "127.0.0.1", "--port", str(port)],
            env=base,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = WatchingEngine(proc, f"http://127.0.0.1:{port}", log)
    wait_state(engine, lambda s: s["kill_switch_state_known"], 30, "the engine read its TradingSystem")
    return engine


def wait_state(
    engine: WatchingEngine, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> tuple[float, dict[str, Any]]:
    """Poll /state until predicate holds; returns (monotonic time it was seen, the state)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | str = "no answer"
    while time.monotonic() < deadline:
        if engine.proc.poll() is not None:
            raise AssertionError(f"engine exited ({engine.proc.returncode}):\n{engine.tail()}")
        try:
            state = engine.state()
            last = state
            if predicate(state):
                return time.monotonic(), state
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}; last state: {last}\n{engine.tail()}")
