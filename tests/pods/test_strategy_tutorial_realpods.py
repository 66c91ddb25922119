"""docs/STRATEGIES.md's cluster step on real pods: the template's image built FROM ours with its own
Dockerfile (examples/strategy-template/Dockerfile, by hack/build-image.sh with buildah instead of `docker
build`, under the tutorial's tag), loaded into containerd as `kind load docker-image` would, then the
tutorial's `kubectl apply` of examples/strategy-template/tradingsystem.yaml, as written, in a namespace of
its own that enforces the restricted profile. The real operator pod reconciles it; the engine pod runs the
template's strategy from that image, in paper mode, and trades.

What this does not model: pushing to and pulling from a registry (no registry is reachable here). The
feed is sped up (ENGINE_FEED_INTERVAL_SECONDS, as the tutorial's local step does) with a patch of the
TradingSystem after the apply, so the strategy trades within seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from hack.devcluster import node
from tests.engine.tutorial import blocks, run_block, workdir
from tests.pods import ownsystem, realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NS = "tutorial"
NAME = "rsi-demo"
TEMPLATE = node.REPO / "examples" / "strategy-template"


def template_image() -> tuple[str, Path]:
    """The tutorial's image (built once, cached by a hash of its inputs): its tag and docker archive."""
    out = subprocess.run(
        ["bash", str(node.REPO / "hack" / "build-image.sh"), "strategy-template"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    name, tag, archive = out.strip().splitlines()[-1].split()
    assert name == "strategy-template"
    return tag, Path(archive)


@pytest.mark.timeout(900)  # a first run builds the template's image (about 2 min)
def test_the_tutorials_tradingsystem_trades_the_template_from_its_image(release, tmp_path: Path) -> None:
    tag, archive = template_image()
    manifest = yaml.safe_load((TEMPLATE / "tradingsystem.yaml").read_text())
    assert manifest["spec"]["engine"]["image"] == tag
    release.node.ctr("images", "import", str(archive))

    root, env = workdir(tmp_path)
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(release.kubeconfig, kubeconfig)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{release.plane.bin_dir}:{env['PATH']}"
    ownsystem.namespace(release, NS)
    try:
        done = run_block(f"kubectl config set-context --current --namespace={NS}", root, env)
        assert done.returncode == 0, done.stderr
        (apply,) = blocks("cluster")
        done = run_block(apply, root, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"tradingsystem.trading.quantzoo.io/{NAME} created" in done.stdout

        speed = [{"name": "ENGINE_FEED_INTERVAL_SECONDS", "value": "0.05"}]
        patch = {"spec": {"engine": {"env": speed}}}
        release.plane.kubectl("-n", NS, "patch", "ts", NAME, "--type=merge", "-p", json.dumps(patch))

        def sped_up_engine() -> dict | None:
            pod = ownsystem.ready_pod(release, NS, NAME, "engine", timeout=10)
            (container,) = pod["spec"]["containers"]
            names = {e["name"] for e in container.get("env", [])}
            return pod if "ENGINE_FEED_INTERVAL_SECONDS" in names else None

        pod = realpods.wait_for(sped_up_engine, 240, "the engine pod of the patched system Ready")
        (container,) = pod["spec"]["containers"]
        assert container["image"] == tag  # the template's image, not the chart's
        url = f"http://{pod['status']['podIP']}:8001"

        def traded() -> dict | None:
            state = httpx.get(url + "/state", timeout=5).json()
            return state if state["orders"]["submitted"] > 0 else None

        state = realpods.wait_for(traded, 120, "a strategy order")
        assert state["strategy"] == "rsiReversion"
        assert state["strategy_health"]["status"] == "running"
        assert state["mode"] == "paper"

        def system_ready() -> bool:
            ts = realpods.kubectl_json(release, "-n", NS, "get", "ts", NAME)
            conditions = {c["type"]: c for c in ts.get("status", {}).get("conditions", [])}
            ready = conditions.get("Ready") or {}
            assert ready.get("status") == "True", ready  # the last one is shown on a timeout
            return True

        realpods.wait_for(system_ready, 60, "the TradingSystem Ready")
    finally:
        release.plane.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)
