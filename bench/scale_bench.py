"""Scale and cost benchmark (`make bench-scale`, part of `make bench`), on the local control plane.

For each N (default 10, 100, 300), in a fresh namespace with a fresh operator watching it:
1. create N TradingSystems at once (default paper broker, simulated feed) and time, per system, the
   moment the operator's `Ready` condition turns True (from the start of the creation burst);
2. run the first `--real` systems' engine and safety pods as real processes (the pod runner); every other
   system stays kwok-simulated: its pods are Running/Ready but no process runs behind them;
3. at rest: operator RSS and CPU seconds over an idle window, engine and safety RSS; then what the safety
   pods' background listing of their engine pods costs the API server (bench/safety_listing.py);
4. kill-all, `--rounds` times: one merge patch per system, all sent at once from a thread pool (what a
   person does with `kubectl patch` in a parallel loop), then `--plugin-rounds` times the product's own
   `kubectl quantzoo kill --all` (one process, one patch after the other). Per system: time from the
   start of the kill-all until its status shows the switch engaged; per real engine: until it halted
   (the engine's own `kill_switch.since` timestamp). Released between rounds with a release record.

"Status shows the switch engaged" means: `status.killSwitch.engaged` is true with
`status.killSwitch.generation` at least the engaging generation, and the `KillSwitchEngaged` condition is
True with that observedGeneration. Both are written by the operator's kill-switch propagator in one
status apply, only after it has taken that generation from its watch and finished its first push round
(propagator.py `_propagate`): reason `Acknowledged` once every replica acknowledged (the real engines),
`Unacknowledged` when a replica could not be reached (the simulated ones: their made-up pod IPs are
outside QUANTZOO_OPERATOR_PUSH_NETWORKS=127.0.0.0/8, so the push is refused without dialling). It is
never the spec echo: the spec side is only the patch itself.

Beside the times, each kill-all round records what it cost: the API server's own request counters
(apiserver_request_total, per verb and resource, until 3 s after the last status) and the CPU seconds
of the operator, the API server and etcd. On a shared machine the times vary with its load (recorded per
round, with the API server's GET latency at rest); the request counts and CPU seconds much less.

Writes bench/results/scale.json and prints a table. `--profile DIR` records the operator with py-spy
during the creation burst, the idle window, the first kill-all and the first one-write halt of each level
(py-spy slows it: not with `--profile-heap-only` or `--profile-nonblocking`, which never pauses it;
`--profile-gil` samples only the thread holding the GIL),
and at the end of each N dumps its threads and heap (bench/profiling/
sitecustomize.py: object and task counts, the RSS the C allocator gives back on a trim; with
`--profile-tracemalloc FRAMES` also tracemalloc's top allocation sites, which slows the operator a lot).
A development aid: py-spy is not a project dependency.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from quantzoo_api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from quantzoo_api.killswitch import kill_switch_of, release_patch_for
from quantzoo_operator.kube import Kube
from quantzoo_safety.killswitch import TARGETS_REFRESH_SECONDS

from bench import one_write_kill, safety_listing, status_floor
from bench import ready_floor as ready_floor_module
from hack.devcluster import controlplane
from hack.devcluster.podrunner import LocalPod, PodRunner, wait_for
from hack.devcluster.stack import OperatorProcess, TradingSystemStack, start_operator

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scale.json"
CRD_FILE = REPO / "crds" / "trading.quantzoo.io_tradingsystems.yaml"
# The README's minimal TradingSystem: every default (paper mode, simulated feed and broker, maCrossover).
SPEC: dict[str, Any] = {
    "symbols": ["AAPL", "MSFT"],
    "risk": {"maxOrderNotional": 50000, "maxDailyDrawdownPct": 3},
}
TARGETS = {
    "ready_all_seconds_at_100": 60.0,
    "operator_rss_mb_at_100": 200.0,
    "killall_engaged_all_seconds_at_100": 2.0,
}
MB = 1024 * 1024


# -- pure: what the status and the engine say ----------------------------------------------------
def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == ctype:
            return cond
    return {}


def generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def is_ready(obj: Mapping[str, Any]) -> bool:
    return _condition(obj, "Ready").get("status") == "True"


def switch_in_status(obj: Mapping[str, Any], *, engaged: bool, after_generation: int) -> bool:
    """The operator has written, for a generation newer than `after_generation`, that the switch is
    `engaged` (status.killSwitch and the KillSwitchEngaged condition, set in one apply)."""
    ks = (obj.get("status") or {}).get("killSwitch") or {}
    cond = _condition(obj, "KillSwitchEngaged")
    return (
        ks.get("engaged") is engaged
        and int(ks.get("generation") or 0) > after_generation
        and cond.get("status") == ("True" if engaged else "False")
        and int(cond.get("observedGeneration") or 0) > after_generation
    )


def status_reason(obj: Mapping[str, Any]) -> str:
    return str(_condition(obj, "KillSwitchEngaged").get("reason") or "")


def halted_since(state: Mapping[str, Any], after_generation: int) -> datetime | None:
    """When the engine halted for a generation newer than `after_generation` (its own clock), or None."""
    ks = state.get("kill_switch") or {}
    if state.get("trading_state") != "HALTED" or not ks.get("engaged"):
        return None
    if int(ks.get("generation") or 0) <= after_generation or not ks.get("since"):
        return None
    return datetime.fromisoformat(str(ks["since"]).replace("Z", "+00:00"))


def count_requests(exposition: str, metric: str = "apiserver_request_total") -> dict[str, float]:
    """A counter of the API server (apiserver_request_total by default) from a Prometheus exposition,
    summed per 'VERB resource[/subresource]'."""
    out: dict[str, float] = {}
    prefix = metric + "{"
    for line in exposition.splitlines():
        if not line.startswith(prefix):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(
            (k, v.strip('"'))
            for k, _, v in (part.partition("=") for part in labels_text[len(prefix) :].split(","))
        )
        if not labels.get("resource"):
            continue
        key = f"{labels.get('verb')} {labels['resource']}" + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        out[key] = out.get(key, 0.0) + float(value)
    return out


def request_delta(
    before: Mapping[str, float], after: Mapping[str, float], scale: float = 1.0
) -> dict[str, int]:
    """Requests per 'VERB resource' between two counts (the busiest first; watches left out)."""
    delta = {k: int((after[k] - before.get(k, 0.0)) * scale) for k in after if not k.startswith("WATCH")}
    return dict(sorted(((k, v) for k, v in delta.items() if v > 0), key=lambda kv: -kv[1]))


def mean_latency_ms(before: str, after: str) -> dict[str, float]:
    """Mean API server latency per 'VERB resource' between two expositions (where the time went)."""
    metric = "apiserver_request_duration_seconds"
    sums = request_delta(
        count_requests(before, metric + "_sum"), count_requests(after, metric + "_sum"), 1000
    )
    counts = request_delta(
        count_requests(before, metric + "_count"), count_requests(after, metric + "_count")
    )
    return {k: round(sums.get(k, 0) / n, 1) for k, n in counts.items() if n}


def percentiles(values: Sequence[float], digits: int = 1) -> dict[str, float | int]:
    """n, p50, p90, p99 (nearest rank) and max."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(round(q * len(ordered), 9)) - 1))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), digits),
        "p90": round(rank(0.90), digits),
        "p99": round(rank(0.99), digits),
        "max": round(ordered[-1], digits),
    }


def targets_met(per_n: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The three targets, judged at N=100 (None when N=100 was not run)."""
    at = per_n.get(100)
    if at is None:
        return {k: {"target": v, "measured": None, "met": None} for k, v in TARGETS.items()}
    ready_s = at["ready_seconds"]["max"]
    rss = at["at_rest"]["operator"]["rss_mb"]
    patch = at["kill_all"].get("patch")
    measured: dict[str, float | None] = {
        "ready_all_seconds_at_100": ready_s,
        "operator_rss_mb_at_100": rss,
        "killall_engaged_all_seconds_at_100": (
            round(patch["all_engaged_ms_worst_round"] / 1000, 3) if patch else None  # no kill-all run
        ),
    }
    return {
        k: {
            "target": TARGETS[k],
            "measured": measured[k],
            "met": None if measured[k] is None else measured[k] < TARGETS[k],
        }
        for k in TARGETS
    }


def format_table(per_n: Mapping[int, Mapping[str, Any]]) -> str:
    """The README table: one column per N."""
    ns = sorted(per_n)

    def row(label: str, cell: Callable[[Mapping[str, Any]], str]) -> str:
        return "| " + label + " | " + " | ".join(cell(per_n[n]) for n in ns) + " |"

    lines = [
        "| N TradingSystems | " + " | ".join(str(n) for n in ns) + " |",
        "|---|" + "---|" * len(ns),
        row("all Ready after creation (s): last / p50", lambda r: _ready_cell(r["ready_seconds"])),
        row("operator RSS at rest (MB)", lambda r: f"{r['at_rest']['operator']['rss_mb']:.0f}"),
        row(
            "operator CPU at rest (% of one core)",
            lambda r: f"{r['at_rest']['operator']['cpu_percent']:.1f}",
        ),
        row(
            "engine / safety RSS at rest (MB, median)",
            lambda r: (
                f"{r['at_rest']['engine']['rss_mb_median']:.0f} / "
                f"{r['at_rest']['safety']['rss_mb_median']:.0f}"
            ),
        ),
        row(
            "API server GET at rest, p50 (ms)",
            lambda r: f"{r['at_rest'].get('api_get_ms', {}).get('p50', 0):.1f}",
        ),
        row(
            "kill-all, parallel patches: status engaged p50 / p99 / all (ms)",
            lambda r: _kill_cell(r["kill_all"].get("patch")),
        ),
        row(
            "kill-all, parallel patches: real engines halted p50 / max (ms)",
            lambda r: _halted_cell(r["kill_all"].get("patch")),
        ),
        row(
            "kill-all, `kubectl quantzoo kill --all`: status engaged p50 / p99 / all (ms)",
            lambda r: _kill_cell(r["kill_all"].get("plugin")),
        ),
    ]
    return "\n".join(lines)


def _halted_cell(d: Mapping[str, Any] | None) -> str:
    h = (d or {}).get("halted_ms") or {}
    return f"{h['p50']:.0f} / {h['max']:.0f}" if h.get("n") else "-"


def _ready_cell(d: Mapping[str, Any]) -> str:
    return f"{d['max']:.1f} / {d['p50']:.1f}"


def _kill_cell(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "-"
    e = d["engaged_ms"]
    return f"{e['p50']:.0f} / {e['p99']:.0f} / {d['all_engaged_ms_worst_round']:.0f}"


# -- process cost, from /proc (Linux) -------------------------------------------------------------
def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its threads included)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 1024**3, 1),
        "python": platform.python_version(),
        "kopf": metadata.version("kopf"),
        "kubernetes_client": metadata.version("kubernetes"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- a watch on every TradingSystem of the namespace ----------------------------------------------
class SystemsWatch(threading.Thread):
    """Keeps the newest version of each TradingSystem and records, per name, when an armed predicate
    first held (monotonic arrival time of the watch event)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True, name=f"watch {namespace}")
        self.crs = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.latest: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, float] = {}
        self._probe: Callable[[str, dict[str, Any]], bool] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()
        self.restarts = 0

    def arm(self, probe: Callable[[str, dict[str, Any]], bool]) -> None:
        with self._lock:
            self._probe, self.hits = probe, {}
            now = time.monotonic()
            for name, obj in self.latest.items():
                if probe(name, obj):
                    self.hits[name] = now

    def _seen(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            self.latest[name] = obj
            if self._probe is not None and name not in self.hits and self._probe(name, obj):
                self.hits[name] = now

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self.crs.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
                now = time.monotonic()
                for item in listed.get("items") or []:
                    self._seen(item, now)
                self.synced.set()
                w = watch.Watch()
                for ev in w.stream(
                    self.crs.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                ):
                    if self._stop.is_set():
                        w.stop()
                        break
                    if ev["type"] == "DELETED":
                        with self._lock:
                            self.latest.pop(ev["object"]["metadata"]["name"], None)
                    elif ev["type"] in ("ADDED", "MODIFIED"):
                        self._seen(ev["object"], time.monotonic())
            except Exception:  # expired resourceVersion, a dropped stream: list again
                self.restarts += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.latest)

    def wait(self, names: Iterable[str], timeout: float, what: str) -> dict[str, float]:
        names = set(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if names <= self.hits.keys():
                    return {n: self.hits[n] for n in names}
            time.sleep(0.01)
        with self._lock:
            missing = sorted(names - self.hits.keys())
            ready = _condition(self.latest.get(missing[0], {}), "Ready") if missing else {}
        why = f"; {missing[0]} Ready: {ready.get('reason')}: {ready.get('message')}" if ready else ""
        raise TimeoutError(
            f"{what}: {len(missing)} of {len(names)} TradingSystems not there after {timeout:.0f}s "
            f"(e.g. {', '.join(missing[:5])}){why}"
        )


# -- one N ----------------------------------------------------------------------------------------
@dataclass
class Options:
    real: int = 10
    rounds: int = 3
    plugin_rounds: int = 1
    idle_seconds: float = 30.0
    settle_seconds: float = 10.0
    parallel: int = 16
    operator_env: dict[str, str] = field(default_factory=dict)
    profile: Path | None = None
    """Folder for py-spy profiles (raw collapsed stacks) and heap dumps of the operator."""
    one_write_rounds: int = 5
    floor_workers: int = 8
    """Threads applying children in the Ready floor (the operator's reconcile pool; 0: no floor)."""
    profile_tracemalloc: int = 0
    """Frames tracemalloc keeps in the operator (0: off); its top allocation sites go in the heap dump."""
    pyspy: bool = True
    """With `profile`: py-spy records too (it slows the operator: a heap dump alone does not)."""
    profile_gil: bool = False
    """With `profile`: py-spy samples only the thread holding the GIL (the operator's Python CPU, without
    threads waiting for a socket or for the GIL)."""
    profile_nonblocking: bool = False
    """With `profile`: py-spy reads the operator without pausing it (its default pauses the process for
    every sample, which stretched a creation burst at N=300 from ~50 s to 242 s)."""
    halt_only: bool = False
    """Only the one-write halts (no idle window, no kill-all, no Ready floor), then the status floor."""
    status_floor_workers: int = 16
    """Threads of the status floor without operator after the one-write rounds (0: none)."""
    safety_listing_seconds: float = TARGETS_REFRESH_SECONDS
    """At rest: the API server's cost of every safety pod's background listing at this interval, the safety
    pods' own (bench/safety_listing.py; 0: not measured)."""


def _api(kubeconfig: Path, pool: int) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def _ms(t: float, t0: float) -> float:
    return (t - t0) * 1000


def _kubectl_quantzoo() -> str:
    beside = Path(sys.executable).parent / "kubectl-quantzoo"
    return str(beside) if beside.exists() else (shutil.which("kubectl-quantzoo") or "kubectl-quantzoo")


class ScaleRun:
    """Everything for one N; `close()` stops every process it started and deletes the namespace."""

    def __init__(
        self,
        kubeconfig: Path,
        plane: controlplane.ControlPlane | None,
        n: int,
        opts: Options,
        prefix: str = "scale",
    ) -> None:
        self.kubeconfig, self.plane, self.n, self.opts = kubeconfig, plane, n, opts
        self.namespace = f"{prefix}-{n}-{os.getpid() % 10000}-{int(time.time()) % 100000}"
        self.api = _api(kubeconfig, opts.parallel * 2)
        self.crs = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.names = [f"ts-{i:04d}" for i in range(n)]
        self.real_names = self.names[: min(opts.real, n)]
        self.pool = cf.ThreadPoolExecutor(opts.parallel, thread_name_prefix="bench")
        self.operator: OperatorProcess | None = None
        self.runner = PodRunner(plane, kubeconfig, _api(kubeconfig, 8))
        self.stacks: dict[str, TradingSystemStack] = {}
        self.watch = SystemsWatch(_api(kubeconfig, 2), self.namespace)

    def log(self, msg: str) -> None:
        print(f"[N={self.n}] {msg}", flush=True)

    # -- phases -----------------------------------------------------------------------------------
    def setup(self) -> None:
        self.make_namespace()
        self.operator = start_operator(self.kubeconfig, [self.namespace], self._operator_env())
        self.watch.start()
        wait_for(self.watch.synced.is_set, timeout=30, what="the benchmark's own watch")

    def make_namespace(self) -> None:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        wait_for(
            lambda: self.core.read_namespaced_service_account("default", self.namespace),
            timeout=60,
            what="the namespace's default ServiceAccount",
        )

    def _operator_env(self) -> dict[str, str]:
        if self.opts.profile is None:
            return self.opts.operator_env
        self.opts.profile.mkdir(parents=True, exist_ok=True)
        return {
            "PYTHONPATH": str(REPO / "bench" / "profiling"),
            "QZ_PROFILE_HEAP_OUT": str(self.opts.profile / f"heap-n{self.n}.txt"),
            "QZ_PROFILE_TRACEMALLOC": str(self.opts.profile_tracemalloc),
            **self.opts.operator_env,
        }

    def create_all(self) -> dict[str, Any]:
        self.watch.arm(lambda _name, obj: is_ready(obj))
        profiler = None if self.opts.halt_only else self._profile(f"create-n{self.n}")
        counted, cpu0 = self.api_metrics(), self.cpu_of_parts()
        t0 = time.monotonic()

        def create(name: str) -> None:
            body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": SPEC}
            self.crs.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

        list(self.pool.map(create, self.names))
        created_ms = _ms(time.monotonic(), t0)
        hits = self.watch.wait(self.names, timeout=120 + 1.0 * self.n, what="Ready after creation")
        _stop(profiler)
        ready = [(hits[n] - t0) for n in self.names]
        # What the operator asked of the API server until every system was Ready, and the CPU it took.
        requests = request_delta(count_requests(counted), count_requests(self.api_metrics()))
        cpu = self.cpu_since(cpu0)
        self.log(f"created in {created_ms:.0f} ms; all Ready after {max(ready):.1f} s")
        return {
            "create_burst_ms": round(created_ms, 1),
            **percentiles(ready, 2),
            "api_requests": requests,
            "events_by_source": self.event_sources(),
            "cpu_seconds": cpu,
        }

    def event_sources(self) -> dict[str, int]:
        """Events in the namespace per 'reporting component: reason' (who posts them), busiest first."""
        counts: dict[str, int] = {}
        for ev in self.core.list_namespaced_event(self.namespace).items:
            source = ev.reporting_component or (ev.source.component if ev.source else None) or "?"
            key = f"{source}: {ev.reason}"
            counts[key] = counts.get(key, 0) + int(ev.count or 1)
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def start_real(self) -> dict[str, Any]:
        """Engine and safety processes of the first `real` systems (both pods of each)."""
        t0 = time.monotonic()

        def run(name: str) -> None:
            stack = TradingSystemStack(self.api, self.runner, self.namespace, name)
            self.stacks[name] = stack
            stack.run_engine()
            stack.run_safety()

        # A few at a time: each start imports the whole app (seconds of CPU on a 2-core machine).
        with cf.ThreadPoolExecutor(4) as starters:
            list(starters.map(run, self.real_names))
        for name, stack in self.stacks.items():
            wait_for(
                lambda s=stack: s.engine_state()["trading_state"] == "ACTIVE",
                timeout=90,
                what=f"engine of {name} ACTIVE",
            )
        self.log(
            f"{len(self.stacks)} engines + safety processes running, ACTIVE ({time.monotonic() - t0:.0f} s)"
        )
        return {
            "engines": len(self.stacks),
            "safety": len(self.stacks),
            "seconds": round(time.monotonic() - t0, 1),
        }

    def at_rest(self) -> dict[str, Any]:
        assert self.operator is not None
        time.sleep(self.opts.settle_seconds)
        engines: list[LocalPod] = [s.engine for s in self.stacks.values() if s.engine]
        safeties: list[LocalPod] = [s.safety for s in self.stacks.values() if s.safety]
        procs = {"operator": [self.operator.proc.pid]} | {
            "engine": [p.proc.pid for p in engines],
            "safety": [p.proc.pid for p in safeties],
        }
        profiler = self._profile(f"idle-n{self.n}", apiserver=False)
        before = {k: [cpu_seconds(pid) for pid in pids] for k, pids in procs.items()}
        load0 = os.getloadavg()
        time.sleep(self.opts.idle_seconds)
        after = {k: [cpu_seconds(pid) for pid in pids] for k, pids in procs.items()}
        _stop(profiler)
        out: dict[str, Any] = {
            "idle_window_s": self.opts.idle_seconds,
            "loadavg": [round(x, 2) for x in load0],
            "api_get_ms": self.api_latency(),
        }
        op_pid = self.operator.proc.pid
        op_cpu = after["operator"][0] - before["operator"][0]
        out["operator"] = {
            "rss_mb": round(rss_bytes(op_pid) / MB, 1),
            "cpu_seconds": round(op_cpu, 2),
            "cpu_percent": round(100 * op_cpu / self.opts.idle_seconds, 2),
        }
        for kind in ("engine", "safety"):
            rss = [rss_bytes(pid) / MB for pid in procs[kind]]
            cpu = [a - b for a, b in zip(after[kind], before[kind], strict=True)]
            out[kind] = {
                "processes": len(rss),
                "rss_mb_median": round(statistics.median(rss), 1) if rss else 0.0,
                "rss_mb_max": round(max(rss), 1) if rss else 0.0,
                "cpu_percent_median": round(100 * statistics.median(cpu) / self.opts.idle_seconds, 2)
                if cpu
                else 0.0,
            }
        self.log(
            f"at rest: operator {out['operator']['rss_mb']} MB, {out['operator']['cpu_percent']}% CPU; "
            f"engine {out['engine']['rss_mb_median']} MB, safety {out['safety']['rss_mb_median']} MB"
        )
        return out

    def api_latency(self, samples: int = 20) -> dict[str, float | int]:
        """One GET of a TradingSystem at a time: how fast this API server answers right now (on a shared
        machine the figures above are only as good as this)."""
        times = []
        for i in range(samples):
            t = time.perf_counter()
            self.crs.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.names[i % len(self.names)]
            )
            times.append((time.perf_counter() - t) * 1000)
        return percentiles(times)

    def cpu_of_parts(self) -> dict[str, float]:
        """CPU seconds consumed so far by the operator and, when the control plane is ours, the API
        server and etcd: what a kill-all costs, independent of how busy the rest of the machine is."""
        pids = {"operator": self.operator.proc.pid} if self.operator else {}
        if self.plane is not None:
            for part in ("kube-apiserver", "etcd"):
                proc = self.plane.procs.get(part)
                if proc is not None:
                    pids[part] = proc.pid
        out = {}
        for part, pid in pids.items():
            with contextlib.suppress(OSError):
                out[part] = cpu_seconds(pid)
        return out

    def cpu_since(self, before: Mapping[str, float], digits: int = 2) -> dict[str, float]:
        """CPU seconds of each part since the reading `before` (cpu_of_parts())."""
        after = self.cpu_of_parts()
        return {k: round(after[k] - before[k], digits) for k in after if k in before}

    def api_metrics(self) -> str:
        """The API server's own metrics (its request counters and latencies)."""
        cfg = self.api.configuration
        auth = cfg.auth_settings().get("BearerToken") or {}
        resp = self.api.rest_client.pool_manager.request(
            "GET", cfg.host + "/metrics", headers={auth.get("key", "authorization"): auth.get("value", "")}
        )
        return str(resp.data.decode())

    def request_delta(self, counted: str) -> dict[str, int]:
        """API requests per 'VERB resource' since the exposition `counted` (api_metrics())."""
        return request_delta(count_requests(counted), count_requests(self.api_metrics()))

    def _get(self, name: str) -> dict[str, Any]:
        return self.crs.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def _patch(self, name: str, body: dict[str, Any]) -> float:
        self.crs.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body)
        return time.monotonic()

    def _engage_round(self, label: str, issue: Callable[[], dict[str, float]]) -> dict[str, Any]:
        before = {n: generation(o) for n, o in self.watch.snapshot().items()}
        self.watch.arm(lambda name, obj: switch_in_status(obj, engaged=True, after_generation=before[name]))
        counted = self.api_metrics()
        cpu0 = self.cpu_of_parts()
        t0, t0_wall = time.monotonic(), time.time()
        returned = issue()
        issued = time.monotonic()
        hits = self.watch.wait(self.names, timeout=60 + 0.2 * self.n, what=f"{label}: engaged in status")
        engaged = [_ms(hits[n], t0) for n in self.names]
        after_own_patch = [_ms(hits[n], returned[n]) for n in self.names if n in returned]
        halted = []
        for name, stack in self.stacks.items():
            since = wait_for(
                lambda s=stack, g=before[name]: halted_since(s.engine_state(), g),
                timeout=15,
                interval=0.05,
                what=f"engine of {name} HALTED",
            )
            halted.append((since.timestamp() - t0_wall) * 1000)
        # Everything the kill-all cost the API server (the operator's follow-ups included), seen 3 s later.
        time.sleep(max(0.0, 3.0 - (time.monotonic() - max(hits.values()))))
        metrics_after = self.api_metrics()
        requests = request_delta(count_requests(counted), count_requests(metrics_after))
        latency = mean_latency_ms(counted, metrics_after)
        cpu = self.cpu_since(cpu0)
        reasons: dict[str, int] = {}
        for obj in self.watch.snapshot().values():
            reasons[status_reason(obj)] = reasons.get(status_reason(obj), 0) + 1
        self.log(
            f"{label}: issued in {_ms(issued, t0):.0f} ms, every status engaged after {max(engaged):.0f} ms, "
            f"real engines halted by {max(halted, default=0):.0f} ms"
        )
        return {
            "loadavg": round(os.getloadavg()[0], 2),
            "issue_ms": round(_ms(issued, t0), 1),
            "all_engaged_ms": round(max(engaged), 1),
            "engaged_ms": engaged,
            "engaged_after_own_patch_ms": after_own_patch,
            "halted_ms": halted,
            "status_reasons": reasons,
            "api_requests": requests,
            "api_mean_ms": latency,
            "cpu_seconds": cpu,
        }

    def _release(self, label: str, issue: Callable[[], Any]) -> None:
        before = {n: generation(o) for n, o in self.watch.snapshot().items()}
        self.watch.arm(lambda name, obj: switch_in_status(obj, engaged=False, after_generation=before[name]))
        issue()
        self.watch.wait(self.names, timeout=60 + 0.2 * self.n, what=f"{label}: released in status")
        for name, stack in self.stacks.items():
            wait_for(
                lambda s=stack: s.engine_state()["trading_state"] == "ACTIVE",
                timeout=30,
                what=f"engine of {name} ACTIVE after release",
            )
        time.sleep(self.opts.settle_seconds / 2)

    def kill_all(self) -> dict[str, Any]:
        body = {
            "spec": {"killSwitch": {"engaged": True, "reason": "scale bench kill-all", "operator": "bench"}}
        }

        def by_patches() -> dict[str, float]:
            return dict(
                zip(self.names, self.pool.map(lambda n: self._patch(n, body), self.names), strict=True)
            )

        def release_by_patches() -> None:
            def release(name: str) -> float:
                current = kill_switch_of(self._get(name))
                return self._patch(name, release_patch_for(current, operator="bench", reason="next round"))

            list(self.pool.map(release, self.names))

        plugin = _kubectl_quantzoo()
        base = [plugin, f"--kubeconfig={self.kubeconfig}"]

        def plugin_all(verb: str) -> None:
            """`kubectl quantzoo kill|release --all` over the whole namespace."""
            subprocess.run(
                [*base, verb, "--all", "-n", self.namespace, "--reason", "scale bench", "--operator=bench"],
                check=True,
                capture_output=True,
                timeout=120 + self.n,
            )

        def by_plugin() -> dict[str, float]:
            plugin_all("kill")
            return {}

        def release_by_plugin() -> None:
            plugin_all("release")

        rounds: dict[str, list[dict[str, Any]]] = {"patch": [], "plugin": []}
        for i in range(self.opts.rounds):
            profiler = self._profile(f"killall-n{self.n}") if i == 0 else None
            rounds["patch"].append(self._engage_round(f"patch round {i + 1}", by_patches))
            _stop(profiler)
            self._release(f"patch round {i + 1}", release_by_patches)
        for i in range(self.opts.plugin_rounds):
            rounds["plugin"].append(self._engage_round(f"plugin round {i + 1}", by_plugin))
            self._release(f"plugin round {i + 1}", release_by_plugin)
        return {kind: summarise_rounds(rs) for kind, rs in rounds.items() if rs}

    def _profile(self, label: str, apiserver: bool = True) -> subprocess.Popen[bytes] | None:
        """py-spy on the operator (a development aid: `--profile DIR`; py-spy is not a dependency)."""
        if self.opts.profile is None or self.operator is None or not self.opts.pyspy:
            return None
        self.opts.profile.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        out = self.opts.profile / f"{label}.txt"
        proc = subprocess.Popen(
            [str(spy), "record", "-p", str(self.operator.proc.pid), "-r", "200", "-f", "raw", "-o", str(out)]
            + (["--gil"] if self.opts.profile_gil else [])
            + (["--nonblocking"] if self.opts.profile_nonblocking else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if apiserver:
            threading.Thread(target=self._apiserver_profile, args=(label,), daemon=True).start()
        time.sleep(1.0)  # py-spy attaches
        return proc

    def heap_dump(self) -> None:
        """The operator's threads (py-spy dump) and heap (SIGUSR2 -> bench/profiling)."""
        if self.opts.profile is None or self.operator is None:
            return
        if self.opts.pyspy:
            spy = Path(sys.executable).parent / "py-spy"
            with open(self.opts.profile / f"threads-n{self.n}.txt", "wb") as out:
                subprocess.run([str(spy), "dump", "-p", str(self.operator.proc.pid)], stdout=out, check=False)
        self.operator.proc.send_signal(signal.SIGUSR2)
        time.sleep(5.0 if self.opts.profile_tracemalloc else 2.0)  # the snapshot takes a while

    def _apiserver_profile(self, label: str) -> None:
        """The API server's own CPU profile (Go pprof) over the same kill-all."""
        assert self.opts.profile is not None
        cfg = self.api.configuration
        auth = cfg.auth_settings().get("BearerToken") or {}
        with contextlib.suppress(Exception):
            resp = self.api.rest_client.pool_manager.request(
                "GET",
                cfg.host + "/debug/pprof/profile?seconds=8",
                headers={auth.get("key", "authorization"): auth.get("value", "")},
                timeout=30,
            )
            (self.opts.profile / f"{label}-apiserver.pprof").write_bytes(resp.data)

    def close(self) -> None:
        """Stop every process, let the TradingSystems go without the finalizer (no operator left to run
        it), and delete the namespace (waiting, bounded, so the next N starts on a quiet control plane)."""
        self.watch.stop()
        self.runner.stop_all()
        if self.operator is not None:
            self.operator.stop()
        unfinalize = {"metadata": {"finalizers": None}}
        list(self.pool.map(lambda n: self._try_patch(n, unfinalize), self.names))
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespace(self.namespace)
        with contextlib.suppress(TimeoutError):

            def gone() -> bool:
                try:
                    self.core.read_namespace(self.namespace)
                except client.ApiException as exc:
                    return exc.status == 404
                return False

            wait_for(gone, timeout=180, interval=1, what=f"namespace {self.namespace} deleted")
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _try_patch(self, name: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(client.ApiException):
            self.crs.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body)


def _stop(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)


def summarise_rounds(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pool the per-system samples of every round; keep each round's 'every status engaged' time."""
    engaged = [v for r in rounds for v in r["engaged_ms"]]
    own = [v for r in rounds for v in r["engaged_after_own_patch_ms"]]
    halted = [v for r in rounds for v in r["halted_ms"]]
    all_engaged = [r["all_engaged_ms"] for r in rounds]
    reasons: dict[str, int] = {}
    for r in rounds:
        for k, v in r["status_reasons"].items():
            reasons[k] = max(reasons.get(k, 0), v)
    return {
        "rounds": len(rounds),
        "issue_ms": [r["issue_ms"] for r in rounds],
        "loadavg_per_round": [r.get("loadavg") for r in rounds],
        "all_engaged_ms_per_round": all_engaged,
        "all_engaged_ms_worst_round": max(all_engaged),
        "all_engaged_ms_median_round": round(statistics.median(all_engaged), 1),
        "engaged_ms": percentiles(engaged),
        "engaged_after_own_patch_ms": percentiles(own),
        "halted_ms": percentiles(halted),
        "status_reasons": reasons,
        "api_requests_per_round": [sum((r.get("api_requests") or {}).values()) for r in rounds],
        "api_requests_first_round": rounds[0].get("api_requests") or {},
        "cpu_seconds_per_round": [r.get("cpu_seconds") for r in rounds],
        "api_mean_ms_first_round": rounds[0].get("api_mean_ms") or {},
    }


def run_n(kubeconfig: Path, plane: controlplane.ControlPlane | None, n: int, opts: Options) -> dict[str, Any]:
    run = ScaleRun(kubeconfig, plane, n, opts)
    try:
        run.setup()
        result: dict[str, Any] = {"n": n, "namespace": run.namespace}
        result["ready_seconds"] = run.create_all()
        result["real_processes"] = run.start_real()
        if opts.halt_only:
            time.sleep(opts.settle_seconds)  # the creation burst's follow-ups settle
        else:
            result["at_rest"] = run.at_rest()
            if opts.safety_listing_seconds:
                result["safety_listing"] = safety_listing.measure(run, interval=opts.safety_listing_seconds)
        # The one-write halts before the kill-all: after it the operator keeps retrying its pushes to the
        # simulated engines it can never reach (in the run of 2026-12-06, 175-290 pod lists fell inside each
        # one-write round at N = 300), a load a cluster of reachable engines does not have.
        if opts.one_write_rounds:  # issue #13: the firm / a desk stopped by one write (one_write_kill.py)
            result["one_write_kill"] = one_write_kill.measure(
                run, rounds=opts.one_write_rounds, api_factory=lambda: _api(kubeconfig, 2)
            )
        if not opts.halt_only:
            result["kill_all"] = run.kill_all()
        assert run.operator is not None
        result["operator_rss_mb_after"] = round(rss_bytes(run.operator.proc.pid) / MB, 1)
        result["operator_rss_mb_peak"] = round(rss_bytes(run.operator.proc.pid, "VmHWM") / MB, 1)
        result["watch_restarts"] = run.watch.restarts
        run.heap_dump()  # it trims the operator's allocator
        if opts.one_write_rounds and opts.status_floor_workers:  # last: it stops the operator
            run.operator.stop()
            result["status_floor"] = status_floor.measure(
                run,
                lambda: Kube(lambda: _api(kubeconfig, opts.status_floor_workers), workers=1),
                workers=opts.status_floor_workers,
            )
        return result
    except Exception:
        if run.operator is not None:
            print(f"[N={n}] operator log tail:\n{run.operator.tail(30)}", file=sys.stderr)
        raise
    finally:
        run.close()


def ready_floor(
    kubeconfig: Path, plane: controlplane.ControlPlane | None, n: int, opts: Options
) -> dict[str, Any]:
    """The same N systems' children made Ready without the operator (bench/ready_floor.py)."""
    run = ScaleRun(kubeconfig, plane, n, opts, prefix="floor")
    try:
        run.make_namespace()
        return ready_floor_module.measure(run, spec=SPEC, workers=opts.floor_workers)
    finally:
        run.close()


def _profiled(opts: Options) -> str | None:
    """How py-spy sampled the operator, if it did: it costs the operator CPU (a blocking one pauses it)."""
    if opts.profile is None or not opts.pyspy:
        return None
    flags = [f for f, on in (("--gil", opts.profile_gil), ("--nonblocking", opts.profile_nonblocking)) if on]
    return " ".join(["py-spy", *flags])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        default=os.environ.get("SCALE_N", "10 100 300"),
        help="numbers of TradingSystems, space or comma separated (env SCALE_N)",
    )
    parser.add_argument("--real", type=int, default=10, help="systems whose engine+safety run as processes")
    parser.add_argument("--rounds", type=int, default=3, help="kill-all rounds with parallel patches")
    parser.add_argument("--plugin-rounds", type=int, default=1, help="kill-all rounds with kubectl quantzoo")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--settle-seconds", type=float, default=10.0)
    parser.add_argument("--parallel", type=int, default=16, help="threads issuing creates and patches")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="KEY=VALUE", help="extra operator env"
    )
    parser.add_argument(
        "--one-write-rounds", type=int, default=5, help="firm/desk kills by one write (0: none)"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy and heap dumps of the operator (see above)"
    )
    parser.add_argument(
        "--floor-workers", type=int, default=8, help="threads of the Ready floor without operator (0: none)"
    )
    parser.add_argument(
        "--halt-only", action="store_true", help="only the one-write halts and the status floor (minutes)"
    )
    parser.add_argument(
        "--status-floor-workers", type=int, default=16, help="threads of the status floor (0: none)"
    )
    parser.add_argument("--profile-tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--profile-heap-only", action="store_true", help="with --profile: no py-spy")
    parser.add_argument(
        "--profile-gil", action="store_true", help="with --profile: py-spy samples only the GIL holder"
    )
    parser.add_argument(
        "--no-safety-listing", action="store_true", help="skip the safety pods' listing cost (60 s per N)"
    )
    parser.add_argument(
        "--profile-nonblocking", action="store_true", help="with --profile: py-spy never pauses the operator"
    )
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.n.replace(",", " ").split()]
    opts = Options(
        real=args.real,
        rounds=args.rounds,
        plugin_rounds=args.plugin_rounds,
        idle_seconds=args.idle_seconds,
        settle_seconds=args.settle_seconds,
        parallel=args.parallel,
        operator_env=dict(kv.split("=", 1) for kv in args.operator_env),
        profile=args.profile,
        one_write_rounds=args.one_write_rounds,
        floor_workers=0 if args.halt_only else args.floor_workers,
        halt_only=args.halt_only,
        status_floor_workers=args.status_floor_workers,
        profile_tracemalloc=args.profile_tracemalloc,
        pyspy=not args.profile_heap_only,
        profile_gil=args.profile_gil,
        profile_nonblocking=args.profile_nonblocking,
        safety_listing_seconds=0.0 if args.no_safety_listing else TARGETS_REFRESH_SECONDS,
    )
    info = machine()
    plane = controlplane.start(Path(tempfile.mkdtemp(prefix="qz-scale-")))
    try:
        plane.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        plane.kubectl("wait", "--for=condition=Established", "crd/tradingsystems.trading.quantzoo.io")
        one_write_kill.prepare(plane)
        per_n = {}
        for n in counts:
            per_n[n] = run_n(plane.kubeconfig, plane, n, opts)
            if opts.floor_workers:  # after the operator's run, on a control plane as quiet as before it
                per_n[n]["ready_floor_seconds"] = ready_floor(plane.kubeconfig, plane, n, opts)
        versions = plane.versions()
    finally:
        plane.stop()
    result = {
        "benchmark": "scale",
        "machine": info,
        "versions": versions,
        "options": {
            "real_engines": opts.real,
            "real_safety": opts.real,
            "patch_rounds": opts.rounds,
            "plugin_rounds": opts.plugin_rounds,
            "idle_seconds": opts.idle_seconds,
            "parallel_patch_threads": opts.parallel,
            "one_write_rounds": opts.one_write_rounds,
            "halt_only": opts.halt_only,
            "status_floor_workers": opts.status_floor_workers,
            "safety_listing_seconds": opts.safety_listing_seconds,
            "profiled": _profiled(opts),
            "spec": SPEC,
        },
        "per_n": {str(n): r for n, r in per_n.items()},
        "targets": targets_met(per_n),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if opts.halt_only:
        for n, r in per_n.items():
            kills = r.get("one_write_kill", {})
            halts = {k: v["status_all_ms_per_round"] for k, v in kills.items() if isinstance(v, dict)}
            floors = r.get("status_floor", {})
            floor = {k: v["status_all_ms"] for k, v in floors.items() if isinstance(v, dict)}
            print(f"N={n}: every status shows the halt (ms per round) {halts}; status floor {floor}")
        return 0
    print(format_table(per_n))
    print(json.dumps(result["targets"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
