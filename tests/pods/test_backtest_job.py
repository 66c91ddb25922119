"""`kubectl quantzoo backtest` on real pods: docs/STRATEGIES.md's "Backtest on the cluster" commands, run
as written, create a Job in a namespace that enforces the restricted profile; its pod runs `quantzoo
backtest` in our image on the real node; the plugin waits, fetches the report from the pod's log, and the
report is the one a local `quantzoo backtest` of the same bars gives (same trades, same fills, same
figures). A strategy the image does not have fails the Job, and the plugin says why, without a traceback.

What this does not model: pulling an image (images are loaded into containerd), and the TTL controller
deleting the Job a day later (the TTL is only checked to be set).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.devcluster import node
from tests.engine.tutorial import blocks, run_block, workdir
from tests.pods import realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NS = "backtests"
TUTORIAL_JOB = "bt-bollinger"


@pytest.fixture(scope="module")
def reader(real_cluster: node.RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A reader's shell: the venv's `quantzoo` and `kubectl-quantzoo`, the cluster's kubectl, and a
    kubeconfig whose namespace is this test's own (restricted) one."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    real_cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    tmp = tmp_path_factory.mktemp("backtest-job")
    root, env = workdir(tmp)
    kubeconfig = tmp / "kubeconfig"
    shutil.copy(real_cluster.kubeconfig, kubeconfig)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{env['PATH']}:{real_cluster.plane.bin_dir}"
    env["QUANTZOO_BACKTEST_IMAGE"] = real_cluster.node.app_image  # loaded into containerd, not pulled
    done = run_block(f"kubectl config set-context --current --namespace={NS}", root, env)
    assert done.returncode == 0, done.stderr
    yield real_cluster, root, env
    real_cluster.plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)


@pytest.mark.timeout(900)  # the first real-pods test of a session starts the node (and builds the image)
def test_the_tutorials_backtest_runs_as_a_job_and_its_report_matches_a_local_backtest(reader) -> None:
    cluster, root, env = reader
    (commands,) = blocks("pods")
    done = run_block(commands, root, env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"backtest {NS}/{TUTORIAL_JOB} created" in done.stdout
    assert "backtest bollingerReversion on AAPL,MSFT: 6000 bars" in done.stdout
    assert "Succeeded" in done.stdout  # the status table
    cluster_report = json.loads((root / "cluster-report" / "report.json").read_text())
    assert (root / "cluster-report" / "report.html").read_text().startswith("<!doctype html>")

    local = run_block(
        "quantzoo backtest --bars week.parquet --strategy bollingerReversion --params '{\"window\": 30}' "
        "--out local-report",
        root,
        env,
    )
    assert local.returncode == 0, local.stderr
    local_report = json.loads((root / "local-report" / "report.json").read_text())
    assert cluster_report["summary"]["trades"] > 0
    for key in ("strategy", "symbols", "period", "summary", "trades", "equity_curve"):
        assert cluster_report[key] == local_report[key], key
    # Same fills; order ids are random UUIDs, so not part of the comparison.
    assert [{**f, "order_id": "-"} for f in cluster_report["fills"]] == [
        {**f, "order_id": "-"} for f in local_report["fills"]
    ]

    # The Job as built: restricted, no token, no retry, a deadline and a TTL; the bars owned by it.
    job = realpods.kubectl_json(cluster, "-n", NS, "get", "job", TUTORIAL_JOB)
    assert (job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (0, 86400)
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    (pod,) = realpods.pods(cluster, NS, f"batch.kubernetes.io/job-name={TUTORIAL_JOB}")
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    cm = realpods.kubectl_json(cluster, "-n", NS, "get", "configmap", f"{TUTORIAL_JOB}-bars")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


def test_a_failed_job_is_reported_with_its_reason_and_the_strategys_own_message(reader) -> None:
    """A strategy that only a custom image would carry is not checked here; the Job checks it and fails."""
    cluster, root, env = reader
    run = (
        "kubectl quantzoo backtest bt-missing --strategy notInThisImage --bars week.parquet "
        f"--image {cluster.node.app_image} --wait"
    )
    done = run_block(run, root, env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: backtest {NS}/bt-missing failed: BackoffLimitExceeded" in done.stderr
    assert "unknown strategy 'notInThisImage' (installed: bollingerReversion" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr

    report = run_block("kubectl quantzoo backtest report bt-missing", root, env)
    assert report.returncode == 1
    assert "unknown strategy 'notInThisImage'" in report.stderr
    assert "Traceback" not in report.stdout + report.stderr


def test_bars_over_the_configmap_limit_are_refused_before_anything_is_created(reader) -> None:
    cluster, root, env = reader
    big = Path(root) / "big.csv"
    done = run_block(
        "quantzoo sample-bars --out big.csv --symbols AAPL,MSFT --bars 20000 && "
        "kubectl quantzoo backtest bt-big --strategy maCrossover --bars big.csv",
        root,
        env,
    )
    assert big.stat().st_size > 1024 * 1024
    assert done.returncode == 2, done.stdout + done.stderr
    assert "must fit in 1 MiB" in done.stderr
    jobs = realpods.kubectl_json(cluster, "-n", NS, "get", "jobs")["items"]
    assert "bt-big" not in [j["metadata"]["name"] for j in jobs]
