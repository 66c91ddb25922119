"""A real `python -m quantzoo_engine` process on a free port, for the tests that need one.

The engine runs with its embedded defaults (simulated feed sped up through ENGINE_FEED_INTERVAL_SECONDS)
plus whatever environment a test adds; `start_engine` returns once it is ready and has priced every symbol.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from engine_helpers import free_port

TOKEN = "process-test-admin-token"
SHUTDOWN_DEADLINE = 5.0


@dataclass
class EngineProcess:
    proc: subprocess.Popen[bytes]
    url: str
    state_dir: Path
    log: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=5.0)


def start_engine(tmp_path: Path, extra_env: dict[str, str] | None = None) -> EngineProcess:
    port = free_port()
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTZOO_", "ENGINE_", "ALPACA_"))}
    env.update(
        {
            "ENGINE_ADMIN_TOKEN": TOKEN,
            "ENGINE_STATE_DIR": str(state_dir),
            "ENGINE_FEED_INTERVAL_SECONDS": "0.05",
            "ENGINE_SHUTDOWN_DEADLINE_SECONDS": str(SHUTDOWN_DEADLINE),
            "POD_NAME": "engine-under-test",
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
    )
    log = tmp_path / "engine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantzoo_engine", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engine = EngineProcess(proc, f"http://127.0.0.1:{port}", state_dir, log)
    deadline = time.monotonic() + 30
    with engine.http() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"engine exited early ({proc.returncode}):\n{log.read_text()}")
            try:
                ready = http.get("/readyz").status_code == 200
                priced = ready and all(s["last_price"] for s in http.get("/symbols/list").json())
                if priced:
                    return engine
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    stop(engine)
    raise AssertionError(f"engine not ready within 30 s:\n{log.read_text()}")


def stop(engine: EngineProcess) -> None:
    if engine.proc.poll() is None:
        engine.proc.terminate()
        try:
            engine.proc.wait(timeout=SHUTDOWN_DEADLINE + 10)
        except subprocess.TimeoutExpired:
            engine.proc.kill()
            engine.proc.wait()
