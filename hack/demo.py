"""`make demo`: QuantZoo up locally, trading, stopped by its kill switch, released, torn down.

Steps: a real control plane (kube-apiserver + etcd + controller-manager + scheduler + kwok); the Helm chart
(CRD, operator Deployment, RBAC); the operator run as its pod would run it (its ServiceAccount's token);
a paper TradingSystem; its engine and safety pods run as real local processes with the config the
operator rendered; trading on the simulated feed; the kill switch engaged with the documented
`kubectl patch`; released with the runbook's deactivate call; teardown (or `--keep`).

Exit code 0 when every step's outcome was checked; 1 naming the failed step; 130 on Ctrl-C. Nothing is
left running unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from kubernetes import config

from hack.devcluster import controlplane
from hack.devcluster.podrunner import PodRunner, wait_for
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


# Simulated pods have made-up IPs: the operator pushes only to the local processes standing in for them.
LOOPBACK_ONLY = {"QUANTZOO_OPERATOR_PUSH_NETWORKS": "127.0.0.0/8"}


class StepFailed(Exception):
    pass


class Demo:
    def __init__(self, keep: bool, quiet: bool = False, results: Path | None = None) -> None:
        self.keep = keep
        self.results_file = results
        self.quiet = quiet
        self.n = 0
        self.total = 8
        self.plane: controlplane.ControlPlane | None = None
        self.runner: PodRunner | None = None
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

    def kubectl(self, *args: str, check: bool = True) -> str:
        assert self.plane is not None
        res = self.plane.kubectl(*args, check=False)
        if check and res.returncode != 0:
            raise StepFailed(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    # -- steps -------------------------------------------------------------------------------------
    def run(self) -> int:
        with self.step(
            "Start a local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
        ):
            self.plane = controlplane.start(self.workdir / "cluster")
            v = self.plane.versions()
            self.say(f"      {v['kube-apiserver']} | {v['etcd']} | kubeconfig {self.plane.kubeconfig}")

        with self.step("Install the CRD, the operator and its RBAC with the Helm chart"):
            helm = self.plane.bin_dir / "helm"
            res = subprocess.run(
                [
                    str(helm),
                    "upgrade",
                    "--install",
                    "quantzoo",
                    str(REPO / "charts" / "quantzoo"),
                    "--namespace",
                    "quantzoo-system",
                    "--create-namespace",
                    "--wait",
                    "--timeout",
                    "120s",
                    f"--kubeconfig={self.plane.kubeconfig}",
                ],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                raise StepFailed(f"helm install: {res.stderr.strip()}")
            self.say(
                "      "
                + self.kubectl("get", "deploy", "-n", "quantzoo-system").strip().replace("\n", "\n      ")
            )

        api = config.new_client_from_config(config_file=str(self.plane.kubeconfig))
        self.runner = PodRunner(self.plane, self.plane.kubeconfig, api)

        with self.step("Run the operator as its pod would (chart's ServiceAccount and RBAC)"):
            pods = self.kubectl(
                "get",
                "pods",
                "-n",
                "quantzoo-system",
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            )
            self.operator = self.runner.run(
                "quantzoo-system", pods.strip(), annotate=False, extra_env=LOOPBACK_ONLY
            )
            self.operator.wait_http("/healthz", timeout=60)
            self.say(f"      operator healthy at {self.operator.url}/healthz (metrics at /metrics)")

        with self.step(f"Create TradingSystem {NAMESPACE}/{NAME} (paper mode, simulated feed and broker)"):
            self.kubectl("create", "namespace", NAMESPACE)
            wait_for(
                lambda: self.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False),
                what="namespace ready",
            )
            self.stack = TradingSystemStack(api, self.runner, NAMESPACE, NAME)
            self.stack.create(SPEC)
            wait_for(
                lambda: (
                    "True"
                    in self.kubectl(
                        "get",
                        "ts",
                        NAME,
                        "-n",
                        NAMESPACE,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                        check=False,
                    )
                ),
                timeout=90,
                what="TradingSystem Ready",
            )
            self.say(
                "      "
                + self.kubectl("get", "ts,statefulset,deploy,svc,pods", "-n", NAMESPACE)
                .strip()
                .replace("\n", "\n      ")
            )

        with self.step("Run the engine and safety pods as local processes; trade the simulated feed"):
            self.stack.run_engine(port=_port_or_free(8001))
            self.stack.run_safety(port=_port_or_free(8888))
            self.say(f"      engine {self.stack.engine.url}   safety {self.stack.safety.url}")
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

        with self.step("Release it explicitly with the runbook's deactivate call; trading resumes"):
            self.say(
                f"      curl -X POST {self.stack.safety.url}/kill-switch/deactivate -H 'Authorization: Bearer $SAFETY_API_TOKEN' "
                '-d \'{"operator": "demo-user"}\''
            )
            resp = httpx.post(
                self.stack.safety.url + "/kill-switch/deactivate",
                headers=self.stack.safety_headers(),
                json={"operator": "demo-user"},
                timeout=10,
            )
            if resp.status_code != 200:
                raise StepFailed(f"deactivate answered {resp.status_code}: {resp.text}")
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

        if self.results_file:
            self.results_file.write_text(json.dumps(self.results, indent=2))
        with self.step("Done" + (" (kept running)" if self.keep else "; tearing down")):
            if self.keep:
                self._print_keep_instructions()
        return 0

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
      kubectl get ts -A ; kubectl describe ts {NAME} -n {NAMESPACE}
      curl {s.engine.url}/healthz ; curl {s.engine.url}/state | jq '.last_update'
      curl {s.engine.url}/positions/current ; curl {s.engine.url}/symbols/list | jq '.[] | {{symbol, last_update}}'
      curl {s.safety.url}/status ; curl {s.safety.url}/test/safety-check -H "Authorization: Bearer $SAFETY_API_TOKEN"
      metrics: {s.engine.url}/metrics  {s.safety.url}/metrics  {self.operator.url}/metrics
      stop everything: make demo-down   (state in {self.workdir})""")
        (REPO / ".demo-state").write_text(
            json.dumps(
                {
                    "workdir": str(self.workdir),
                    "pgids": [p.proc.pid for p in self.runner.running],
                }
            )
        )

    def cleanup(self) -> None:
        if self.keep and self.stack and self.stack.safety:
            return
        if self.runner:
            self.runner.stop_all()
        if self.plane:
            self.plane.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def down() -> int:
    state_file = REPO / ".demo-state"
    if not state_file.exists():
        print("no demo running", file=sys.stderr)
        return 0
    state = json.loads(state_file.read_text())
    for pgid in state["pgids"]:
        with contextlib.suppress(ProcessLookupError):
            import os

            os.killpg(pgid, signal.SIGTERM)
    controlplane.kill_stale(Path(state["workdir"]) / "cluster")
    shutil.rmtree(state["workdir"], ignore_errors=True)
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
    # SIGTERM behaves like Ctrl-C: clean up and leave no process or port behind.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
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
