"""docs/STRATEGIES.md's cluster step, run as written: `kubectl apply` of the template's TradingSystem on
the real control plane; the real operator reconciles it; its engine pod runs the template's strategy in
paper mode and trades.

Stand-in: no container engine runs here, so the engine pod (kwok) is run by the pod runner as a local
process, with the template installed by the tutorial's `pip install` on its PYTHONPATH instead of in an
image built FROM ours (the Dockerfile itself is linted by tests/docker).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.engine.tutorial import blocks, run_block, workdir

pytestmark = pytest.mark.slow


def test_the_tutorials_tradingsystem_paper_trades_the_template(
    cluster, kube_api, runner, namespace, operator_process, tmp_path: Path
) -> None:
    root, env = workdir(tmp_path)
    install = blocks("local")[0].splitlines()[0]
    assert install.startswith("pip install ")
    done = run_block(install, root, env)
    assert done.returncode == 0, done.stdout + done.stderr

    # The reader's kubectl, on a kubeconfig whose current namespace is this test's.
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(cluster.kubeconfig, kubeconfig)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{cluster.bin_dir}:{env['PATH']}"
    ns = run_block(f"kubectl config set-context --current --namespace={namespace}", root, env)
    assert ns.returncode == 0, ns.stderr

    (apply,) = blocks("cluster")
    done = run_block(apply, root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tradingsystem.trading.quantzoo.io/rsi-demo created" in done.stdout

    stack = TradingSystemStack(kube_api, runner, namespace, "rsi-demo")
    try:
        stack.run_engine(extra_env={"PYTHONPATH": env["PYTHONPATH"], "ENGINE_FEED_INTERVAL_SECONDS": "0.05"})
        wait_for(lambda: stack.engine_state()["orders"]["submitted"] > 0, timeout=60, what="a strategy order")
        state = stack.engine_state()
        assert state["strategy"] == "rsiReversion"
        assert state["strategy_health"]["status"] == "running"
        assert state["mode"] == "paper"
    finally:
        stack.stop()
