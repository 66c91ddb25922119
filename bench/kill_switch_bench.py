"""Kill-switch latency benchmark (`make bench`), on the local control plane with real processes.

For each trial: engage with a merge patch and measure, from the moment the patch call returns,
(a) until the engine refuses new orders (its /state says HALTED), (b) until the TradingSystem's status
shows every replica's acknowledgement; then release, and engage through the runbook's safety API and
measure (c) until the engine refuses orders. In the same run, the floor: how long a bare watch on the
same object takes to see the same patch. 1000 trials by default, so p99 is a percentile and not the
maximum of 100. Writes bench/results/kill_switch.json, with the targets checked against the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from kubernetes import client, config, watch
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.killswitch import kill_switch_of, release_patch_for

from bench import one_write_kill
from hack.devcluster import controlplane
from hack.devcluster.podrunner import PodRunner, wait_for
from hack.devcluster.stack import TradingSystemStack, start_operator

RESULTS = Path(__file__).resolve().parent / "results" / "kill_switch.json"
SPEC = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 3, "intervalSeconds": 0.2},
}


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 2),
    }


class ObjectWatcher(threading.Thread):
    """A bare watch on the TradingSystem: records when each resourceVersion and each ack is seen."""

    def __init__(self, api: client.ApiClient, ns: str, name: str) -> None:
        super().__init__(daemon=True)
        self.crs = client.CustomObjectsApi(api)
        self.ns, self.name = ns, name
        self.seen_rv: dict[str, float] = {}
        self.acked_generation: dict[int, float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            w = watch.Watch()
            for ev in w.stream(
                self.crs.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.ns,
                PLURAL,
                field_selector=f"metadata.name={self.name}",
                timeout_seconds=30,
            ):
                now = time.monotonic()
                obj = ev["object"]
                self.seen_rv.setdefault(obj["metadata"]["resourceVersion"], now)
                ks = (obj.get("status") or {}).get("killSwitch") or {}
                acks = ks.get("acknowledgements") or []
                if ks.get("engaged") and acks and all(a.get("engaged") for a in acks):
                    self.acked_generation.setdefault(int(ks.get("generation") or 0), now)
                if self.stop_flag.is_set():
                    w.stop()


def wait_halted(http: httpx.Client, url: str, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get(url + "/state").json()["trading_state"] == "HALTED":
            return time.monotonic()
    raise TimeoutError("engine did not halt")


def run_trials(
    stack: TradingSystemStack,
    watcher: ObjectWatcher,
    http: httpx.Client,
    trials: int,
    activate: Callable[[], None],
    deactivate: Callable[[], None],
) -> dict[str, list[float]]:
    """The trials (see the module docstring): {figure: milliseconds per trial}. `activate`/`deactivate`
    are the runbook's calls as this edition makes them."""
    patch_to_halt, patch_to_ack, floor, safety_to_halt = [], [], [], []
    for i in range(trials):
        out = stack.patch(
            {"spec": {"killSwitch": {"engaged": True, "reason": f"bench {i}", "operator": "bench"}}}
        )
        t0 = time.monotonic()
        rv, gen = out["metadata"]["resourceVersion"], out["metadata"]["generation"]
        t_halt = wait_halted(http, stack.engine.url)
        wait_for(lambda g=gen: g in watcher.acked_generation, timeout=10, interval=0.002)
        wait_for(lambda r=rv: r in watcher.seen_rv, timeout=10, interval=0.002)
        patch_to_halt.append((t_halt - t0) * 1000)
        patch_to_ack.append((watcher.acked_generation[gen] - t0) * 1000)
        floor.append((watcher.seen_rv[rv] - t0) * 1000)
        stack.patch(release_patch_for(kill_switch_of(stack.get()), operator="bench", reason=f"trial {i}"))
        wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=10, interval=0.005)
        # (c) the runbook's activate call
        t1 = time.monotonic()
        activate()
        safety_to_halt.append((wait_halted(http, stack.engine.url) - t1) * 1000)
        deactivate()
        wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=10, interval=0.005)
    return {
        "patch_to_halt_ms": patch_to_halt,
        "patch_to_ack_ms": patch_to_ack,
        "safety_api_to_halt_ms": safety_to_halt,
        "watch_floor_ms": floor,
    }


def summarise(figures: dict[str, list[float]], trials: int, spec: dict, apiserver: str) -> dict:
    """Percentiles, and the targets checked against the same run's floor."""
    result: dict = {"trials": trials, **{k: pct(v) for k, v in figures.items()}}
    halt, ack, floor = result["patch_to_halt_ms"], result["patch_to_ack_ms"], result["watch_floor_ms"]
    result["targets"] = {
        "patch_to_halt_p99_within_50ms_of_floor_p99": halt["p99"] - floor["p99"] <= 50,
        "patch_to_ack_p99_under_500ms": ack["p99"] < 500,
    }
    result["strategy"] = spec["strategy"]["name"]
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result["kube_apiserver"] = apiserver
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cpu-burner",
        action="store_true",
        help="run the engine's strategy as one that burns CPU for 5 s on every bar (test strategies from "
        "tests/engine/engine_plugins.py); results to kill_switch_cpu_burner.json unless --out",
    )
    args = parser.parse_args(argv)
    spec, engine_env = SPEC, None
    if args.cpu_burner:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
        from engine_plugins import install_test_strategies

        plugins = install_test_strategies(Path(tempfile.mkdtemp(prefix="qz-bench-plugins-")))
        engine_env = {"PYTHONPATH": str(plugins)}
        # A team's image in the spec: the operator leaves a strategy it does not know to the engine.
        spec = {
            **SPEC,
            "strategy": {"name": "cpuBurner", "params": {"burnSeconds": 5}},
            "engine": {"image": "quantzoo/test-strategies:0.1.0"},
        }
        if args.out == RESULTS:
            args.out = RESULTS.with_name("kill_switch_cpu_burner.json")

    plane = controlplane.start(Path(tempfile.mkdtemp(prefix="qz-bench-")))
    runner = None
    operator = None
    try:
        plane.kubectl(
            "apply",
            "--server-side",
            "-f",
            str(Path(__file__).resolve().parents[1] / "crds" / "trading.quantzoo.io_tradingsystems.yaml"),
        )
        plane.kubectl("wait", "--for=condition=Established", "crd/tradingsystems.trading.quantzoo.io")
        one_write_kill.prepare(plane)  # the engine also watches the TradingHalts (issue #13)
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        ns = "bench"
        plane.kubectl("create", "namespace", ns)
        wait_for(lambda: plane.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0)
        operator = start_operator(plane.kubeconfig, [ns])
        runner = PodRunner(plane, plane.kubeconfig, api)
        stack = TradingSystemStack(api, runner, ns, f"bench-{uuid.uuid4().hex[:4]}")
        stack.create(spec)
        stack.run_engine(extra_env=engine_env)
        stack.run_safety()
        http = httpx.Client(timeout=5)
        wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30)
        watcher = ObjectWatcher(api, ns, stack.name)
        watcher.start()
        time.sleep(1)

        def activate() -> None:
            http.post(
                stack.safety.url + "/kill-switch/activate",
                headers=stack.safety_headers(),
                json={"reason": "bench", "close_positions": False, "operator": "bench"},
            ).raise_for_status()

        def deactivate() -> None:
            http.post(
                stack.safety.url + "/kill-switch/deactivate",
                headers=stack.safety_headers(),
                json={"operator": "bench"},
            ).raise_for_status()

        figures = run_trials(stack, watcher, http, args.trials, activate, deactivate)
        watcher.stop_flag.set()
        result = summarise(figures, args.trials, spec, plane.versions()["kube-apiserver"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if runner:
            runner.stop_all()
        if operator:
            operator.stop()
        plane.stop()


if __name__ == "__main__":
    raise SystemExit(main())
