"""The pod-level promises, on real pods (containerd + runc, a real kubelet, kube-proxy, CoreDNS and an
enforcing NetworkPolicy controller; see hack/devcluster/node.py): the chart's operator runs as its
Deployment's pod, the engine and safety pods it creates pass the restricted profile and run as non-root on a
read-only root, readiness really gates, every NetworkPolicy is enforced, and a kill holds when the engine's
container is killed under it.

One cluster, one chart install and one TradingSystem for the module (the tests run in file order; the last
one engages the kill switch). What this does not model: more than one node (no pod-to-pod traffic across
nodes, no anti-affinity), and images are loaded into containerd, never pulled.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import pytest

from hack.devcluster import node
from tests.pods import realpods
from tests.pods.realpods import MONITORING_NS, OPERATOR_NS, OUTSIDER_NS, SYSTEM, TRADING_NS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ENGINE_PORT = 8001
SAFETY_PORT = 8888


def engine_state(pod: dict) -> dict:
    # This host is the node: the kubelet's probes come from here too, and no policy stands in between.
    url = f"http://{pod['status']['podIP']}:{ENGINE_PORT}/state"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def test_the_operator_runs_as_its_deployments_pod(release):
    pod = realpods.one_ready_pod(release, OPERATOR_NS, "app.kubernetes.io/component=operator")
    assert pod["spec"]["nodeName"] == node.NODE_NAME
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    cid = realpods.container_id(pod, pod["spec"]["containers"][0]["name"])
    assert cid in release.node.ctr("containers", "list", "-q").stdout.split()
    nodes = realpods.kubectl_json(release, "get", "nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node.NODE_NAME]  # no kwok node anywhere


@pytest.mark.parametrize("component", ["engine", "safety"])
def test_engine_and_safety_run_restricted_as_non_root_on_a_read_only_root(release, trading_system, component):
    """Admitted into a namespace that enforces the restricted profile, and inside the container: uid 10001,
    and writing to the root filesystem fails."""
    pod = trading_system[component]
    ns = realpods.kubectl_json(release, "get", "namespace", TRADING_NS)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    script = (
        "import os\nprint(os.getuid(), os.getgid())\n"
        "try:\n    open('/opt/venv/probe', 'w')\nexcept OSError as e:\n    print(e.strerror)\n"
    )
    res = release.plane.kubectl(
        "-n", TRADING_NS, "exec", pod["metadata"]["name"], "--", "python", "-c", script, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["10001 10001", "Read-only file system"]


def test_network_policies_admit_only_the_allowed_peers(release, trading_system):
    engine_ip = trading_system["engine"]["status"]["podIP"]
    safety_ip = trading_system["safety"]["status"]["podIP"]
    engine = f"http://{engine_ip}:{ENGINE_PORT}"
    safety = f"http://{safety_ip}:{SAFETY_PORT}"
    # Prometheus's namespace (monitoring.scrapeNamespaces): scrapes both, by Service name through CoreDNS too.
    engine_svc = f"http://{SYSTEM}-engine.{TRADING_NS}.svc.cluster.local:{ENGINE_PORT}"
    scraped = realpods.probe_from(
        release, MONITORING_NS, "scrape", [f"{engine}/metrics", f"{safety}/metrics", f"{engine_svc}/metrics"]
    )
    assert set(scraped.values()) == {200}, scraped
    # A pod in another namespace: refused on both ports.
    outsider = realpods.probe_from(
        release, OUTSIDER_NS, "outsider", [f"{engine}/healthz", f"{safety}/healthz"]
    )
    assert all(isinstance(v, str) for v in outsider.values()), outsider  # refused or timed out
    # A pod of the same namespace that is not the safety pod: the safety API yes, the engine no.
    neighbour = realpods.probe_from(
        release, TRADING_NS, "neighbour", [f"{engine}/healthz", f"{safety}/healthz"]
    )
    assert neighbour[f"{safety}/healthz"] == 200, neighbour
    assert isinstance(neighbour[f"{engine}/healthz"], str), neighbour


def test_readiness_really_gates_a_wedged_engine(release, trading_system):
    """SIGSTOP the engine's process in its container: /readyz stops answering, the pod goes NotReady (and
    leaves its Service's endpoints); SIGCONT brings it back Ready."""
    pod = trading_system["engine"]
    name = pod["metadata"]["name"]
    pid = realpods.task_pid(release, realpods.container_id(pod, "engine"))
    os.kill(pid, signal.SIGSTOP)
    try:
        realpods.wait_for(
            lambda: not realpods.ready(realpods.kubectl_json(release, "-n", TRADING_NS, "get", "pod", name)),
            25,
            "wedged engine NotReady",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    realpods.wait_for(
        lambda: realpods.ready(realpods.kubectl_json(release, "-n", TRADING_NS, "get", "pod", name)),
        60,
        "engine Ready again",
    )


def test_kill_holds_when_the_engines_container_is_killed(release, trading_system):
    """Engage with kubectl patch (the operator's push must get through the engine's NetworkPolicy: the
    acknowledgements are its replies), SIGKILL the engine's container with ctr, and the container the
    kubelet starts again comes back halted."""
    pod = trading_system["engine"]
    name = pod["metadata"]["name"]
    patch = {"spec": {"killSwitch": {"engaged": True, "reason": "real-pods test"}}}
    release.plane.kubectl("-n", TRADING_NS, "patch", "ts", SYSTEM, "--type=merge", "-p", json.dumps(patch))

    def acknowledged() -> dict | None:
        ks = realpods.kubectl_json(release, "-n", TRADING_NS, "get", "ts", SYSTEM)["status"].get(
            "killSwitch", {}
        )
        acks = ks.get("acknowledgements") or []
        return ks if ks.get("engaged") and acks and all(a.get("engaged") for a in acks) else None

    realpods.wait_for(acknowledged, 60, "kill switch acknowledged by the engine")
    assert engine_state(pod)["kill_switch"]["engaged"] is True

    before = pod_now(release, name)
    restarts = before["status"]["containerStatuses"][0]["restartCount"]
    release.node.ctr("tasks", "kill", "--signal", "SIGKILL", realpods.container_id(before, "engine"))

    def restarted() -> dict | None:
        now = pod_now(release, name)
        st = now["status"]["containerStatuses"][0]
        return now if st["restartCount"] > restarts and realpods.ready(now) else None

    after = realpods.wait_for(restarted, 120, "engine container restarted and Ready")
    state = engine_state(after)
    assert state["kill_switch"]["engaged"] is True, state
    assert state["trading_state"] == "HALTED", state
    realpods.wait_for(acknowledged, 60, "kill switch acknowledged by the restarted engine")


def pod_now(cluster: node.RealCluster, name: str) -> dict:
    return realpods.kubectl_json(cluster, "-n", TRADING_NS, "get", "pod", name)
