"""What the safety pods' background listing of their engine pods costs the API server at N systems.

Every safety pod lists its system's engine pods every TARGETS_REFRESH_SECONDS (quantzoo_safety.killswitch), so
that a direct halt during a control-plane outage knows their addresses. In bench/scale_bench.py only the first
`real` systems' safety pods run as processes; this adds, for every other system, the same list (the safety
service's own `TradingSystems.list_pods`, same label selector, same decode) at the same cadence, spread evenly
over the interval, and compares the API server's and etcd's CPU over a window with those lists against an
equal window without them (the real safety processes list in both).

Writes `per_n["<N>"]["safety_listing"]`: lists per second, the CPU of each part as % of one core in both
windows, and the lists' latency (p50/p99, ms). Not modelled: N safety processes' own connections (the lists
here share one client's pool).
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from typing import Any

from quantzoo_api.engine_pods import engine_pod_selector
from quantzoo_safety.killswitch import TARGETS_REFRESH_SECONDS
from quantzoo_safety.kube import TradingSystems


def measure(run: Any, *, interval: float = TARGETS_REFRESH_SECONDS) -> dict[str, Any]:
    """`run`: a scale_bench ScaleRun at rest (its systems created and Ready). Two windows of `interval`."""
    from bench.scale_bench import percentiles

    real = set(run.real_names)
    simulated = [n for n in run.names if n not in real]
    systems = TradingSystems(run.api, request_timeout=10.0, field_manager="scale-bench")

    def percent_of_a_core(before: dict[str, float], seconds: float) -> dict[str, float]:
        return {k: round(100 * v / seconds, 2) for k, v in run.cpu_since(before, digits=6).items()}

    cpu0 = run.cpu_of_parts()
    time.sleep(interval)
    quiet = percent_of_a_core(cpu0, interval)

    def list_one(name: str) -> float | None:
        """The list's latency (ms), None when it failed: a failed list is part of what this measures."""
        t = time.monotonic()
        try:
            systems.list_pods(run.namespace, engine_pod_selector(name))
        except Exception:
            return None
        return (time.monotonic() - t) * 1000

    # One pass: every simulated system's list once, evenly spaced over the interval (the steady state).
    gap = interval / max(1, len(simulated))
    cpu1, start = run.cpu_of_parts(), time.monotonic()
    with cf.ThreadPoolExecutor(4, thread_name_prefix="safety-lister") as pool:
        lists: list[cf.Future[float | None]] = []
        for i, name in enumerate(simulated):
            time.sleep(max(0.0, start + i * gap - time.monotonic()))
            lists.append(pool.submit(list_one, name))
        time.sleep(max(0.0, start + interval - time.monotonic()))
    window = time.monotonic() - start
    listing = percent_of_a_core(cpu1, window)
    latencies = [ms for ms in (f.result() for f in lists) if ms is not None]
    out = {
        "systems_listed": len(simulated),
        "interval_s": interval,
        "lists_per_second": round(len(simulated) / interval, 2),
        "window_s": round(window, 1),
        "cpu_percent_without": quiet,
        "cpu_percent_with": listing,
        "list_ms": percentiles(latencies, 1),
        "failures": len(lists) - len(latencies),
    }
    run.log(
        f"safety listing ({out['lists_per_second']}/s): API server {quiet.get('kube-apiserver')} -> "
        f"{listing.get('kube-apiserver')} % of a core, etcd {quiet.get('etcd')} -> {listing.get('etcd')} %"
    )
    return out
