"""The runbook's curl commands, verbatim except for the port, against `python -m quantzoo_safety` started as
a real process (standalone mode, QUANTZOO_KUBERNETES=0, against the stand-in engine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from safety_support import ENGINE_TOKEN, TOKEN, audit_entries, closed_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed"),
]

# From ../shared/runbook.md, exactly as written there.
ACTIVATE_1 = """curl -X POST http://localhost:8888/kill-switch/activate \\
  -H "Authorization: Bearer $SAFETY_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"reason": "Emergency stop - runaway trading", "close_positions": true, "operator": "YOUR_NAME"}'"""
VERIFY_PUBLIC = "curl http://localhost:8888/status"
ACTIVATE_2 = """curl -X POST http://localhost:8888/kill-switch/activate \\
  -H "Authorization: Bearer $SAFETY_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "reason": "Describe why kill switch activated",
    "close_positions": true,
    "operator": "Your Name"
  }'"""
DEACTIVATE = """curl -X POST http://localhost:8888/kill-switch/deactivate \\
  -H "Authorization: Bearer $SAFETY_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"operator": "Your Name"}'"""
VERIFY_FULL = """curl http://localhost:8888/status \\
  -H "Authorization: Bearer $SAFETY_API_TOKEN\""""
SAFETY_CHECK = """curl http://localhost:8888/test/safety-check \\
  -H "Authorization: Bearer $SAFETY_API_TOKEN\""""


@pytest.fixture
def safety_process(engine, tmp_path) -> Iterator[tuple[int, Path]]:
    port = closed_port()
    audit = tmp_path / "audit.jsonl"
    env = {
        **os.environ,
        "QUANTZOO_KUBERNETES": "0",
        "QUANTZOO_NAMESPACE": "trading",
        "QUANTZOO_NAME": "demo",
        "ENGINE_URL": engine.url,
        "ENGINE_ADMIN_TOKEN": ENGINE_TOKEN,
        "SAFETY_API_TOKEN": TOKEN,
        "SAFETY_AUDIT_LOG": str(audit),
        "SAFETY_PORT": str(port),
    }
    log = tmp_path / "safety.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantzoo_safety", "--host", "127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"safety service did not start: {log.read_text()}")
            time.sleep(0.05)
        yield port, audit
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    logs = log.read_text()
    assert "kill-switch.activate" in logs  # the audit lines reach the log stream too
    assert TOKEN not in logs
    assert ENGINE_TOKEN not in logs


def sh(command: str, port: int) -> dict:
    command = command.replace("localhost:8888", f"localhost:{port}")
    env = {**os.environ, "SAFETY_API_TOKEN": TOKEN}
    done = subprocess.run(
        ["bash", "-c", command + " -s"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_runbook_curl_commands(safety_process, engine):
    port, audit = safety_process
    first = sh(ACTIVATE_1, port)
    assert first["status"] == "engaged"
    assert first["engine"] == "halted"
    assert first["engine_ack"]["closed_positions"] == ["AAPL"]
    assert sh(VERIFY_PUBLIC, port) == {
        "service": "ok",
        "kill_switch_engaged": True,
        "trading_state": "HALTED",
    }
    again = sh(ACTIVATE_2, port)
    assert again["status"] == "already engaged"
    assert again["kill_switch"]["operator"] == "YOUR_NAME"
    full = sh(VERIFY_FULL, port)
    assert full["kill_switch"]["reason"] == "Emergency stop - runaway trading"
    check = sh(SAFETY_CHECK, port)
    assert {c["name"] for c in check["checks"]} == {
        "token_valid",
        "engine_reachable",
        "apiserver_reachable",
        "kill_switch_consistent",
        "watchdog_running",
    }
    assert check["passed"] is True, check
    released = sh(DEACTIVATE, port)
    assert released["status"] == "released"
    assert released["release"]["operator"] == "Your Name"
    assert engine.engine.trading_state == "ACTIVE"
    assert sh(DEACTIVATE, port) == {"detail": "kill switch is not engaged; nothing to release"}
    # The audit entry of the last call may land just after its response: wait for it, bounded.
    deadline = time.monotonic() + 5
    while len(audit_entries(audit)) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    entries = audit_entries(audit)
    # The public /status (no token) is not audited: a flood of it must not flood the audit.
    assert [e["action"] for e in entries] == [
        "kill-switch.activate",
        "kill-switch.activate",
        "status",
        "safety-check",
        "kill-switch.deactivate",
        "kill-switch.deactivate",
    ]
    assert all(e["client_ip"] == "127.0.0.1" for e in entries)
    assert TOKEN not in audit.read_text()
