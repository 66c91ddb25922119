"""One write halts the firm or a desk (issue #13, item 3), measured in bench/scale_bench.py's run of one N.

For each level (Firm, then Desk: the run's namespace, which holds all N systems), `rounds` times:
one merge patch engages the level's TradingHalt (created released beforehand, not timed), then
- every REAL engine halted: the engine's own `kill_switch.since` (it watches the halts itself) minus the
  wall time the patch was sent;
- every system's status showing the halt: the operator's levels component writes status.killSwitch.heldBy
  (operator/quantzoo_operator/levels); the time the bench's own watch of the systems sees the last one;
- the same run's watch floor: `floor_watchers` bare watches of the TradingHalts (one connection each), the
  time each sees the patched resourceVersion: what any watcher could not beat;
then a release (naming the engagement) and a wait until every engine trades and every status is clear.

Writes `per_n["<N>"]["one_write_kill"] = {"firm": {...}, "desk": {...}}`, each with "writes" (1),
"engines_halted_ms" {"p50", "p99"} over every real engine of every round, "status_all_ms" (p50/p99/max over
rounds of the time until every status shows it), "watch_floor_ms" {"p50", "p99"}, and the target checks;
beside them what each round cost (the API server's requests per verb and resource from the write until 1.5 s
after the last status, CPU seconds of the operator, the API server and etcd), and "levels_passes": the
operator's levels component's status passes (events coalesced, writes, ms) from its log.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from quantzoo_api import GROUP, VERSION
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for
from quantzoo_api.levels import HALT_PLURAL, KillLevel, halt_body

from hack.devcluster import levels_rbac
from hack.devcluster.podrunner import wait_for

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "crds"
TARGET_OVER_FLOOR_MS = 50.0
TARGET_STATUS_MS_AT_300 = 2000.0


def prepare(plane: Any) -> None:
    """Every CRD (the engines watch the TradingHalts, and TradingAccounts) and the engines' read of the
    halts (the chart's -halt-reader binding): without them an engine never leaves HALTED."""
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    levels_rbac.install(plane.kubectl, plane.bin_dir / "helm")


def _pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p99": 0.0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"p50": round(rank(0.5), 1), "p99": round(rank(0.99), 1)}


class HaltWatcher(threading.Thread):
    """A bare watch of the TradingHalts: when it first saw each resourceVersion (monotonic)."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(daemon=True, name="halt-floor")
        self.crs = client.CustomObjectsApi(api)
        self.seen: dict[str, float] = {}
        self.stop_flag = threading.Event()
        self.synced = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                listed = self.crs.list_cluster_custom_object(GROUP, VERSION, HALT_PLURAL)
                self.synced.set()
                w = watch.Watch()
                for ev in w.stream(
                    self.crs.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    HALT_PLURAL,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=30,
                ):
                    self.seen.setdefault(ev["object"]["metadata"]["resourceVersion"], time.monotonic())
                    if self.stop_flag.is_set():
                        w.stop()
                        break
            except Exception:
                time.sleep(0.1)


def _held_by(obj: dict[str, Any], holder: str) -> bool:
    held = ((obj.get("status") or {}).get("killSwitch") or {}).get("heldBy") or []
    return any(h.get("name") == holder for h in held)


def _engine_halted_at(state: dict[str, Any], holder: str) -> datetime | None:
    ks = state.get("kill_switch") or {}
    if state.get("trading_state") != "HALTED":
        return None
    if not any(h.get("name") == holder for h in ks.get("held_by") or []):
        return None
    return datetime.fromisoformat(ks["since"]) if ks.get("since") else None


def measure(run: Any, *, rounds: int = 5, floor_watchers: int = 10, api_factory: Callable[[], Any]) -> dict:
    """`run`: a scale_bench ScaleRun with its systems Ready and real engines ACTIVE (before its kill-all)."""
    crs = client.CustomObjectsApi(run.api)
    watchers = [HaltWatcher(api_factory()) for _ in range(floor_watchers)]
    for w in watchers:
        w.start()
    for w in watchers:
        wait_for(w.synced.is_set, timeout=30, what="the floor's watches")
    out: dict[str, Any] = {}
    try:
        for level in (KillLevel.FIRM, KillLevel.DESK):
            body = halt_body(level, run.namespace if level is KillLevel.DESK else None)
            name = f"{body['metadata']['name']}-bench-{run.n}"
            body["metadata"]["name"] = name
            crs.create_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, body)
            try:
                out[level.value.lower()] = _rounds(run, crs, watchers, level, name, rounds)
            finally:
                current = kill_switch_of(crs.get_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name))
                if current.get("engaged"):
                    patch = release_patch_for(current, operator="bench", reason="bench over")
                    crs.patch_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name, patch)
                crs.delete_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name)
    finally:
        for w in watchers:
            w.stop_flag.set()
    out["levels_passes"] = levels_passes(run.operator.log)
    return out


def levels_passes(log: Path) -> list[dict[str, Any]]:
    """The operator's levels component's status passes (events coalesced, writes, ms), from its log."""
    passes = []
    for line in log.read_text(errors="replace").splitlines():
        if '"levels: status pass"' in line:
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                passes.append({k: rec.get(k) for k in ("ts", "events", "writes", "ms")})
    return passes


def _rounds(
    run: Any, crs: Any, watchers: list[HaltWatcher], level: KillLevel, name: str, rounds: int
) -> dict:
    holder = f"{level}/{name}"
    halted: list[float] = []
    status_all: list[float] = []
    floor: list[float] = []
    costs: list[dict[str, Any]] = []
    for i in range(rounds):
        run.watch.arm(lambda _n, obj: _held_by(obj, holder))
        # `--profile DIR`: py-spy on the operator over the first round of each level (it slows the operator).
        profiler = run._profile(f"halt-{level.value.lower()}-n{run.n}") if i == 0 else None
        counted, cpu0 = run.api_metrics(), run.cpu_of_parts()
        t0, t0_wall = time.monotonic(), time.time()
        patched = crs.patch_cluster_custom_object(
            GROUP, VERSION, HALT_PLURAL, name, engage_patch(reason=f"bench {level} {i}", operator="bench")
        )
        rv = patched["metadata"]["resourceVersion"]
        for stack in run.stacks.values():
            since = wait_for(
                lambda s=stack: _engine_halted_at(s.engine_state(), holder), timeout=15, interval=0.02
            )
            halted.append((since.timestamp() - t0_wall) * 1000)
        hits = run.watch.wait(run.names, timeout=60 + 0.2 * run.n, what=f"{level} halt in every status")
        status_all.append((max(hits.values()) - t0) * 1000)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        for w in watchers:
            wait_for(lambda w=w, rv=rv: rv in w.seen, timeout=10, interval=0.005)
            floor.append((w.seen[rv] - t0) * 1000)
        # What the halt cost the API server: its burst and the operator's follow-ups (a refresh waits 0.5 s).
        time.sleep(max(0.0, 1.5 - (time.monotonic() - max(hits.values()))))
        cpu = run.cpu_since(cpu0)
        costs.append({"api_requests": run.request_delta(counted), "cpu_seconds": cpu})
        run.log(f"one write, {level}: engines halted by {max(halted[-len(run.stacks):] or [0]):.0f} ms, "
                f"every status by {status_all[-1]:.0f} ms")  # fmt: skip
        # Release (naming the engagement), then wait for every engine to trade and every status to clear.
        current = kill_switch_of(crs.get_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name))
        release = release_patch_for(current, operator="bench", reason=f"round {i}")
        run.watch.arm(lambda _n, obj: not _held_by(obj, holder))
        crs.patch_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, name, release)
        run.watch.wait(run.names, timeout=60 + 0.2 * run.n, what=f"{level} release in every status")
        for stack in run.stacks.values():
            wait_for(lambda s=stack: s.engine_state()["trading_state"] == "ACTIVE", timeout=30, interval=0.05)
    engines, floor_pct = _pct(halted), _pct(floor)
    status = sorted(status_all)
    result = {
        "writes": 1,
        "rounds": rounds,
        "engines": len(run.stacks),
        "systems": run.n,
        "engines_halted_ms": engines,
        "status_all_ms": round(status[len(status) // 2], 1),
        "status_all_ms_max": round(status[-1], 1),
        "watch_floor_ms": floor_pct,
        "status_all_ms_per_round": [round(v, 1) for v in status_all],
        "api_requests_per_round": [sum(c["api_requests"].values()) for c in costs],
        "api_requests_first_round": costs[0]["api_requests"] if costs else {},
        "cpu_seconds_per_round": [c["cpu_seconds"] for c in costs],
        "targets": {"engines_halted_p99_within_50ms_of_floor_p99": engines["p99"] - floor_pct["p99"] <= 50},
    }
    if run.n >= 300:
        result["targets"]["status_all_under_2s"] = status[-1] < TARGET_STATUS_MS_AT_300
    return result
