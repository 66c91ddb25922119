"""docs/STRATEGIES.md, run as written: a strategy that is not in this repository (the template, installed
as its own package) is tested, backtested through `quantzoo backtest`, and paper-traded by a real engine
process. The cluster step is tests/pods/test_strategy_tutorial_realpods.py (real pods)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import free_port
from tutorial import blocks, run_block, workdir

pytestmark = pytest.mark.slow


def test_the_tutorial_installs_tests_backtests_and_paper_trades_the_template(tmp_path: Path) -> None:
    install, backtest, paper = blocks("local")
    root, env = workdir(tmp_path)

    done = run_block(install, root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rsiReversion\tquantzoo_strategy_template.rsi:RsiReversion" in done.stdout
    assert "3 passed" in done.stdout

    done = run_block(backtest, root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backtest rsiReversion on AAPL,MSFT: 40000 bars" in done.stdout
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["trades"] > 0
    report = json.loads((root / "report" / "report.json").read_text())
    assert report["strategy"]["name"] == "rsiReversion"
    assert (root / "report" / "report.html").is_file()

    env["ENGINE_PORT"] = str(free_port())
    done = run_block(paper, root, env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    state = json.loads(done.stdout[done.stdout.rindex('{\n  "trading_state"') :])
    assert state["strategy"] == "rsiReversion"
    assert state["strategy_health"]["status"] == "running"
    assert state["strategy_health"]["isolated"] is True
    assert state["orders"]["submitted"] > 0
