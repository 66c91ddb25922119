"""The runbook's manual smoke test, on real pods: hack/runbook-smoke-test.sh (documented in
docs/RUNBOOK.md, "Manual smoke test") run verbatim against its own paper TradingSystem in its own
namespace, through `kubectl port-forward` as the runbook does. The system runs the `noop` strategy, so
every order and position is the script's own."""

from __future__ import annotations

import os
import socket

import pytest

from hack.devcluster import node
from tests.pods import ownsystem, realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NS = "deploy-smoke"
NAME = "smoke"
SCRIPT = node.REPO / "hack" / "runbook-smoke-test.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runbook_smoke_test_script_passes(release):
    assert f"NS=trading TS=demo bash hack/{SCRIPT.name}" in ownsystem.runbook_block("## Manual smoke test")
    spec = {"mode": "paper", "symbols": ["AAPL"], "strategy": {"name": "noop"}}
    with ownsystem.trading_system(release, NS, NAME, spec):
        env = {
            **os.environ,
            "PATH": f"{release.plane.bin_dir}:{os.environ['PATH']}",
            "KUBECONFIG": str(release.kubeconfig),
            "NS": NS,
            "TS": NAME,
            # Free local ports instead of the runbook's 8001/8888: this machine is shared.
            "LOCAL_ENGINE_PORT": str(free_port()),
            "LOCAL_SAFETY_PORT": str(free_port()),
        }
        res = ownsystem.bash(f"bash {SCRIPT}", env, timeout=300)
        assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
        for step in (
            "1. place",
            "2. it appears",
            "3. close",
            "4. P&L",
            "5. activate",
            "6. orders are refused",
            "7. deactivate",
        ):
            assert step in res.stdout, res.stdout
        assert "smoke test passed" in res.stdout
        ts = realpods.kubectl_json(release, "-n", NS, "get", "ts", NAME)
        assert ts["spec"]["killSwitch"]["engaged"] is False  # left released
