"""`make demo`: QuantZoo up locally on real pods, trading, stopped by its kill switch, released, torn down.

Steps: a real single-node cluster (hack/devcluster/node.py: the control plane plus containerd, kubelet,
kube-proxy, CoreDNS and a NetworkPolicy controller); the Helm chart installed with the locally built image
(CRD, operator Deployment, RBAC); the operator running as its Deployment's pod; a paper TradingSystem whose
engine and safety pods the operator creates; trading on the simulated feed; the kill switch engaged with
the documented `kubectl patch`, released with the runbook's deactivate curl through `kubectl port-forward`,
engaged again with the runbook's activate curl and released; `kubectl get pods -A -o wide`; teardown (or
`--keep`).

Exit code 0 when every step's outcome was checked; 1 naming the failed step; 130 on Ctrl-C. Nothing is
left running unless --keep. Needs root and `make node-deps`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

from hack.devcluster import controlplane, node, podaddress, portforward
from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "trading"
NAME = "demo"
SPEC: dict[str, Any] = {
    "mode": "paper",
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "maCrossover", "params": {"fastWindow": 3, "slowWindow": 8, "orderQuantity": 10}},
    "marketData": {"kind": "simulated", "seed": 7, "intervalSeconds": 0.1},
    "risk": {
        "maxOrderNotional": 50000,
        "maxDailyDrawdownPct": 3,
        "maxOrdersPerSecond": 20,
        "maxOrdersPerMinute": 600,
    },
}
RUNBOOK_ACTIVATE = (
    '{"reason": "Emergency stop - runaway trading", "close_positions": true, "operator": "YOUR_NAME"}'
)
RUNBOOK_DEACTIVATE = '{"operator": "Your Name"}'


class StepFailed(Exception):
    pass


class Demo:
    def __init__(self, keep: bool, quiet: bool = False, results: Path | None = None) -> None:
        self.keep = keep
        self.results_file = results
        self.quiet = quiet
        self.n = 0
        self.total = 10
        self.cluster: node.RealCluster | None = None
        self.stack: TradingSystemStack | None = None
        self.operator = None
        self.workdir = Path(tempfile.mkdtemp(prefix="quantzoo-demo-"))
        self.results: dict[str, Any] = {}

    # -- output ------------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.n += 1
        self.say(f"\n[{self.n}/{self.total}] {title}")
        t0 = time.monotonic()
        try:
            yield
        except (KeyboardInterrupt, StepFailed):
            raise
        except Exception as exc:
            raise StepFailed(f"step {self.n} ({title}) failed: {type(exc).__name__}: {exc}") from exc
        self.say(f"      done in {time.monotonic() - t0:.1f} s")

    @property
    def plane(self) -> controlplane.ControlPlane | None:
        return self.cluster.plane if self.cluster else None

    def kubectl(self, *args: str, check: bool = True) -> str:
        assert self.plane is not None
        res = self.plane.kubectl(*args, check=False)
        if check and res.returncode != 0:
            raise StepFailed(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    # -- steps -------------------------------------------------------------------------------------
    def run(self) -> int:
        with self.step(
            "Start a real single-node cluster (control plane; containerd, kubelet, kube-proxy, CoreDNS, kube-router)"
        ):
            self.cluster = node.start_cluster(self.workdir / "cluster")
            v = self.cluster.plane.versions()
            self.say(f"      {v['kube-apiserver']} | {v['etcd']} | kubeconfig {self.cluster.kubeconfig}")
            self.say(
                f"      up in {self.cluster.timings['cluster up']:.1f} s; image {self.cluster.node.app_image}"
            )

        with self.step(
            "Install the CRD, the operator and its RBAC with the Helm chart (the locally built image)"
        ):
            repository, tag = self.cluster.node.app_image.rsplit(":", 1)
            res = node.run(
                *(
                    str(self.plane.bin_dir / "helm"),
                    "upgrade",
                    "--install",
                    "quantzoo",
                    str(REPO / "charts" / "quantzoo"),
                ),
                *("--namespace", "quantzoo-system", "--create-namespace", "--wait", "--timeout", "180s"),
                *("--set", f"image.repository={repository}", "--set", f"image.tag={tag}"),
                *("--set", "image.pullPolicy=Never", "--set-json", f'pushNetworks=["{node.CLUSTER_CIDR}"]'),
                f"--kubeconfig={self.plane.kubeconfig}",
                check=False,
            )
            if res.returncode != 0:
                raise StepFailed(f"helm install: {res.stderr.strip()}")
            self.say(
                "      "
                + self.kubectl("get", "deploy", "-n", "quantzoo-system").strip().replace("\n", "\n      ")
            )

        api = config.new_client_from_config(config_file=str(self.plane.kubeconfig))
        core = client.CoreV1Api(api)

        with self.step("The operator runs as its Deployment's pod"):
            pod = wait_for(
                lambda: _ready_pod(core, "quantzoo-system", "app.kubernetes.io/component=operator"),
                timeout=120,
                what="operator pod Ready",
            )
            self.operator = podaddress.PodAddress(
                api, self.plane, "quantzoo-system", "", pod.metadata.name, f"http://{pod.status.pod_ip}:8080"
            )
            self.say(
                "      "
                + self.kubectl("get", "pods", "-n", "quantzoo-system", "-o", "wide")
                .strip()
                .replace("\n", "\n      ")
            )

        with self.step(f"Create TradingSystem {NAMESPACE}/{NAME} (paper mode, simulated feed and broker)"):
            self.kubectl("create", "namespace", NAMESPACE)
            wait_for(
                lambda: self.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False),
                what="namespace ready",
            )
            self.stack = TradingSystemStack(api, None, NAMESPACE, NAME)  # type: ignore[arg-type]
            image = {"image": self.cluster.node.app_image, "imagePullPolicy": "Never"}
            self.stack.create({**SPEC, "engine": image, "safety": image})
            wait_for(
                lambda: (
                    "True"
                    in self.kubectl(
                        "get", "ts", NAME, "-n", NAMESPACE, "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
                    )
                ),
                timeout=180,
                what="TradingSystem Ready",
            )  # fmt: skip
            self.say(
                "      "
                + self.kubectl("get", "ts,statefulset,deploy,svc,pods", "-n", NAMESPACE, "-o", "wide")
                .strip()
                .replace("\n", "\n      ")
            )

        with self.step("The engine and safety pods the operator created trade the simulated feed"):
            selector = f"trading.quantzoo.io/system={NAME},app.kubernetes.io/component="
            for component, port, attr in (("engine", 8001, "engine"), ("safety", 8888, "safety")):
                pod = wait_for(
                    lambda c=component: _ready_pod(core, NAMESPACE, selector + c),
                    timeout=120,
                    what=f"{component} pod Ready",
                )
                setattr(self.stack, attr, podaddress.of_pod(api, self.plane, pod, port))
            self.say(
                f"      engine {self.stack.engine.url}   safety {self.stack.safety.url}   (pod addresses)"
            )
            self.results["engine_url"], self.results["safety_url"] = (
                self.stack.engine.url,
                self.stack.safety.url,
            )
            wait_for(
                lambda: self.stack.engine_state()["trading_state"] == "ACTIVE",
                timeout=30,
                what="engine ACTIVE",
            )
            wait_for(
                lambda: self.stack.engine_state()["orders"]["filled"] >= 3, timeout=60, what="three fills"
            )
            # A resting limit order so there is something working for the kill switch to cancel.
            price = {r["symbol"]: r for r in httpx.get(self.stack.engine.url + "/symbols/list").json()}[
                "MSFT"
            ]["last_price"]
            self.stack.place_order("MSFT", "buy", 5, type="limit", limit_price=round(price * 0.97, 2))
            st = self.stack.engine_state()
            self._show_trading(st)
            self.results.update(
                fills_before_kill=st["orders"]["filled"], working_before_kill=st["orders"]["working"]
            )
            self.say("      " + self.kubectl("get", "ts", "-n", NAMESPACE).strip().replace("\n", "\n      "))

        with self.step("Engage the kill switch with kubectl patch (close positions)"):
            patch = {
                "spec": {
                    "killSwitch": {
                        "engaged": True,
                        "reason": "demo: runaway trading",
                        "operator": "demo-user",
                        "closePositions": True,
                    }
                }
            }
            self.say(f"      kubectl patch ts {NAME} -n {NAMESPACE} --type merge -p '{json.dumps(patch)}'")
            t0 = time.monotonic()
            self.kubectl("patch", "ts", NAME, "-n", NAMESPACE, "--type", "merge", "-p", json.dumps(patch))
            t_patch = time.monotonic()
            wait_for(
                lambda: self.stack.engine_state()["trading_state"] == "HALTED",
                timeout=15,
                interval=0.005,
                what="engine halted",
            )
            t_halt = time.monotonic()
            ks = wait_for(self.stack.acknowledged, timeout=20, interval=0.01, what="status acknowledgement")
            t_ack = time.monotonic()
            refused = self.stack.place_order("AAPL", "buy", 1)
            st = self.stack.engine_state()
            if refused.status_code < 400:
                raise StepFailed(f"an order was accepted while the kill switch was engaged: {refused.text}")
            if st["orders"]["working"] != 0:
                raise StepFailed(f"{st['orders']['working']} working orders left after the kill")
            flat = wait_for(self.stack.flat_positions, timeout=15, what="positions flat")
            self.results.update(
                patch_to_halt_ms=(t_halt - t_patch) * 1000,
                patch_to_ack_ms=(t_ack - t_patch) * 1000,
                halted=True,
                order_refused_status=refused.status_code,
                working_after_kill=st["orders"]["working"],
                positions_flat=True,
                acknowledged_replicas=[a["replica"] for a in ks["acknowledgements"]],
            )
            self.say(
                f"      engine HALTED {1000 * (t_halt - t_patch):.0f} ms after the patch returned "
                f"(patch call itself {1000 * (t_patch - t0):.0f} ms)"
            )
            self.say(
                f"      status acknowledged {1000 * (t_ack - t_patch):.0f} ms after the patch: "
                f"{json.dumps(ks['acknowledgements'])}"
            )
            self.say(f"      new order refused: HTTP {refused.status_code} {refused.text}")
            self.say(f"      working orders: {st['orders']['working']}; positions: {flat}")

        with (
            self.step("Release it with the runbook's deactivate curl, through kubectl port-forward"),
            self._port_forward() as local,
        ):
            self._runbook_curl(local, "deactivate", RUNBOOK_DEACTIVATE)
            wait_for(
                lambda: self.stack.engine_state()["trading_state"] == "ACTIVE",
                timeout=20,
                what="trading resumed",
            )
            self.say("      engine ACTIVE again")

        with (
            self.step("Engage it with the runbook's activate curl (port-forward), then release it again"),
            self._port_forward() as local,
        ):
            self._runbook_curl(local, "activate", RUNBOOK_ACTIVATE)
            wait_for(
                lambda: self.stack.engine_state()["trading_state"] == "HALTED",
                timeout=15,
                what="engine halted",
            )
            refused = self.stack.place_order("AAPL", "buy", 1)
            if refused.status_code < 400:
                raise StepFailed(f"an order was accepted after the runbook's activate: {refused.text}")
            self.say(f"      engine HALTED; new order refused: HTTP {refused.status_code}")
            self._runbook_curl(local, "deactivate", RUNBOOK_DEACTIVATE)
            wait_for(
                lambda: self.stack.engine_state()["trading_state"] == "ACTIVE",
                timeout=20,
                what="trading resumed",
            )
            before = self.stack.engine_state()["orders"]["submitted"]
            accepted = self.stack.place_order("AAPL", "buy", 1)
            if accepted.status_code != 201:
                raise StepFailed(f"order after release refused: {accepted.text}")
            after = self.stack.engine_state()["orders"]["submitted"]
            self.say(f"      engine ACTIVE; order accepted (submitted {before} -> {after})")
            self.results.update(resumed=True, order_after_release_status=accepted.status_code)
            self.say("      " + self.kubectl("get", "ts", "-n", NAMESPACE).strip().replace("\n", "\n      "))

        with self.step("Every pod is a real container on the real node"):
            pods = self.kubectl("get", "pods", "-A", "-o", "wide")
            self.say("      " + pods.strip().replace("\n", "\n      "))
            nodes = self.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split()
            if nodes != [node.NODE_NAME]:
                raise StepFailed(f"nodes {nodes}: expected only {node.NODE_NAME}")
            self.results["nodes"] = nodes

        if self.results_file:
            self.results_file.write_text(json.dumps(self.results, indent=2))
        with self.step("Done" + (" (kept running)" if self.keep else "; tearing down")):
            if self.keep:
                self._print_keep_instructions()
        return 0

    @contextlib.contextmanager
    def _port_forward(self) -> Iterator[int]:
        """`kubectl port-forward svc/<name>-safety <local>:8888`, as the runbook assumes (localhost:8888)."""
        assert self.plane is not None
        local = _port_or_free(8888)
        self.say(f"      kubectl -n {NAMESPACE} port-forward svc/{NAME}-safety {local}:8888 &")
        kubectl = self.plane.bin_dir / "kubectl"
        with portforward.port_forward(
            kubectl, self.plane.kubeconfig, NAMESPACE, f"{NAME}-safety", local, 8888
        ):
            yield local

    def _runbook_curl(self, port: int, action: str, body: str) -> None:
        """The runbook's curl, verbatim but for the port; $SAFETY_API_TOKEN from the operator's Secret."""
        assert self.stack is not None
        assert self.stack.safety is not None
        url = f"http://localhost:{port}/kill-switch/{action}"
        shown = f'curl -X POST {url} -H "Authorization: Bearer $SAFETY_API_TOKEN" -H "Content-Type: application/json" -d \'{body}\''
        self.say(f"      {shown}")
        token = self.stack.safety.secret("SAFETY_API_TOKEN")
        res = node.run(
            "curl", "-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", "POST", url,
            "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json", "-d", body,
            check=False,
        )  # fmt: skip
        if res.stdout.strip() != "200":
            raise StepFailed(f"runbook {action}: HTTP {res.stdout.strip()} {res.stderr.strip()}")
        self.say(f"      HTTP 200 {res.stderr.strip()[:160]}")

    def _show_trading(self, st: dict) -> None:
        o = st["orders"]
        self.say(
            f"      orders submitted {o['submitted']}, filled {o['filled']}, rejected {o['rejected']}, working {o['working']}"
        )
        self.say(f"      P&L {json.dumps(st['pnl'])}")
        self.say(
            f"      positions {json.dumps(httpx.get(self.stack.engine.url + '/positions/current').json())}"
        )

    def _print_keep_instructions(self) -> None:
        assert self.plane
        assert self.stack
        s = self.stack
        self.say(f"""
      export KUBECONFIG={self.plane.kubeconfig}
      export SAFETY_API_TOKEN={"$"}(kubectl -n {NAMESPACE} get secret {NAME}-safety-token -o jsonpath='{{.data.token}}' | base64 -d)
      kubectl get pods -A -o wide ; kubectl describe ts {NAME} -n {NAMESPACE}
      kubectl -n {NAMESPACE} port-forward svc/{NAME}-safety 8888:8888 &   # then the runbook's curl commands
      curl {s.engine.url}/healthz ; curl {s.engine.url}/state | jq '.last_update'   # pod addresses reach from here
      metrics: {s.engine.url}/metrics  {s.safety.url}/metrics  {self.operator.url}/metrics
      stop everything: make demo-down   (state in {self.workdir})""")
        (REPO / ".demo-state").write_text(json.dumps({"workdir": str(self.workdir)}))

    def cleanup(self) -> None:
        if self.keep and self.stack and self.stack.safety:
            return
        if self.cluster:
            self.cluster.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _ready_pod(core: client.CoreV1Api, namespace: str, selector: str) -> client.V1Pod | None:
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        conds = {c.type: c.status for c in (pod.status.conditions or [])}
        if conds.get("Ready") == "True" and not pod.metadata.deletion_timestamp:
            return pod
    return None


def _port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def down() -> int:
    state_file = REPO / ".demo-state"
    if not state_file.exists():
        print("no demo running", file=sys.stderr)
        return 0
    workdir = Path(json.loads(state_file.read_text())["workdir"])
    controlplane.kill_stale(workdir / "cluster")
    node.cleanup_host(workdir / "cluster" / "node")
    shutil.rmtree(workdir, ignore_errors=True)
    state_file.unlink()
    print("demo stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", action="store_true", help="leave everything running and print how to use it"
    )
    parser.add_argument("--down", action="store_true", help="stop a demo left running with --keep")
    parser.add_argument(
        "--results", type=Path, help="write the checked outcome as JSON (used by the demo's test)"
    )
    args = parser.parse_args(argv)
    if args.down:
        return down()
    demo = Demo(keep=args.keep, results=args.results)
    # SIGTERM behaves like Ctrl-C: clean up and leave no process or port behind. Ctrl-C itself too, even when
    # started where SIGINT is ignored (a background job of a script inherits SIG_IGN, and Python then never
    # raises KeyboardInterrupt: the demo ran on to the end).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = demo.run()
        print("\nQuantZoo demo: OK", flush=True)
        return code
    except StepFailed as exc:
        print(f"\nQuantZoo demo FAILED: {exc}", file=sys.stderr, flush=True)
        if demo.stack and demo.stack.engine:
            print("engine log tail:\n" + demo.stack.engine.tail(), file=sys.stderr)
        if demo.operator:
            print("operator log tail:\n" + demo.operator.tail(), file=sys.stderr)
        demo.keep = False
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        demo.keep = False
        return 130
    finally:
        demo.cleanup()


if __name__ == "__main__":
    sys.exit(main())
