"""Kill-switch latency benchmark on real pods (`make bench`): the trials of kill_switch_bench.py, on the
real single-node cluster (hack/devcluster/node.py: containerd, kubelet, kube-proxy, CoreDNS, enforced
NetworkPolicies), with the chart's operator as its Deployment's pod and the engine and safety pods it
creates.

Per trial: engage with a merge patch -> the engine's /state says HALTED (read from the node at the pod's
address), and -> every replica's acknowledgement in the TradingSystem's status; release; then the
runbook's activate curl, verbatim (its body too: close_positions true), through `kubectl port-forward`
to the safety Service -> HALTED, and the runbook's deactivate curl. The floor is a bare watch on the
same object in the same run. The runbook's figure includes starting curl (a process per call, as an
operator's shell does). Writes bench/results/kill_switch_realpods.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from kubernetes import client, config

from bench.kill_switch_bench import SPEC, ObjectWatcher, run_trials, summarise
from hack.devcluster import node, podaddress, portforward
from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack

RESULTS = Path(__file__).resolve().parent / "results" / "kill_switch_realpods.json"
OPERATOR_NS = "quantzoo-system"
NS = "bench"
NAME = "bench"
# The runbook's bodies, verbatim (docs/RUNBOOK.md, "How to Activate" and "Deactivation Command").
ACTIVATE_BODY = """{
    "reason": "Describe why kill switch activated",
    "close_positions": true,
    "operator": "Your Name"
  }"""
DEACTIVATE_BODY = '{"operator": "Your Name"}'


def install_chart(cluster: node.RealCluster) -> None:
    """`helm install` of the chart with the locally built image, as `make demo` does."""
    repository, tag = cluster.node.app_image.rsplit(":", 1)
    node.run(
        *(str(cluster.plane.bin_dir / "helm"), "install", "quantzoo", str(node.REPO / "charts" / "quantzoo")),
        *("--kubeconfig", str(cluster.kubeconfig), "-n", OPERATOR_NS, "--create-namespace"),
        *("--set", f"image.repository={repository}", "--set", f"image.tag={tag}"),
        *("--set", "image.pullPolicy=Never", "--set-json", f'pushNetworks=["{node.CLUSTER_CIDR}"]'),
        *("--wait", "--timeout=5m"),
    )


def ready_pod(core: client.CoreV1Api, selector: str) -> client.V1Pod | None:
    for pod in core.list_namespaced_pod(NS, label_selector=selector).items:
        conds = {c.type: c.status for c in (pod.status.conditions or [])}
        if conds.get("Ready") == "True" and not pod.metadata.deletion_timestamp:
            return pod
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def port_forward(cluster: node.RealCluster) -> Iterator[int]:
    """`kubectl port-forward svc/<name>-safety <port>:8888`, as the runbook assumes (localhost)."""
    kubectl, service = cluster.plane.bin_dir / "kubectl", f"{NAME}-safety"
    with portforward.port_forward(kubectl, cluster.kubeconfig, NS, service, free_port(), 8888) as port:
        yield port


def runbook_curl(port: int, action: str, body: str, token: str) -> None:
    """The runbook's curl (`curl -X POST http://localhost:8888/kill-switch/<action> -H ... -d '<body>'`)."""
    res = node.run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
        "-X", "POST", f"http://localhost:{port}/kill-switch/{action}",
        "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json", "-d", body,
        check=False,
    )  # fmt: skip
    if res.stdout.strip() != "200":
        raise RuntimeError(f"runbook {action}: HTTP {res.stdout.strip()} {res.stderr.strip()[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    problem = node.missing_prerequisites()
    if problem:
        raise SystemExit(problem)
    with node.real_cluster(Path(tempfile.mkdtemp(prefix="qz-bench-realpods-"))) as cluster:
        install_chart(cluster)
        cluster.plane.kubectl("create", "namespace", NS)
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core = client.CoreV1Api(api)
        wait_for(lambda: cluster.plane.kubectl("get", "sa", "default", "-n", NS, check=False).returncode == 0)
        stack = TradingSystemStack(api, None, NS, NAME)  # type: ignore[arg-type]  # the kubelet runs the pods
        image = {"image": cluster.node.app_image, "imagePullPolicy": "Never"}
        stack.create({**SPEC, "engine": image, "safety": image})
        selector = f"trading.quantzoo.io/system={NAME},app.kubernetes.io/component="
        for component, port in (("engine", 8001), ("safety", 8888)):
            pod = wait_for(
                lambda c=component: ready_pod(core, selector + c), timeout=240, what=f"{component} Ready"
            )
            setattr(stack, component, podaddress.of_pod(api, cluster.plane, pod, port))
        assert stack.engine is not None
        assert stack.safety is not None
        token = stack.safety.secret("SAFETY_API_TOKEN")
        http = httpx.Client(timeout=5)
        wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=60)
        with port_forward(cluster) as local:
            watcher = ObjectWatcher(api, NS, NAME)
            watcher.start()
            time.sleep(1)
            figures = run_trials(
                stack,
                watcher,
                http,
                args.trials,
                activate=lambda: runbook_curl(local, "activate", ACTIVATE_BODY, token),
                deactivate=lambda: runbook_curl(local, "deactivate", DEACTIVATE_BODY, token),
            )
            watcher.stop_flag.set()
        result = summarise(figures, args.trials, SPEC, cluster.plane.versions()["kube-apiserver"])
        result["where"] = (
            "real pods: the chart's operator pod, the engine and safety pods on a real kubelet "
            "(containerd + runc), NetworkPolicies enforced; runbook curl through kubectl port-forward"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
