"""The scale benchmark's whole code path at N=2 with one real engine, so `make bench` cannot rot.

Behaviour only (no speed is asserted): every system goes Ready, the costs are read, a kill-all by
parallel patches and one by `kubectl quantzoo kill --all` reach every status, the real engine halts, and
the benchmark cleans up its processes and its namespace.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from bench.scale_bench import Options, format_table, run_n

pytestmark = pytest.mark.slow


def test_scale_bench_runs_end_to_end_at_n2(cluster, kube_api) -> None:
    opts = Options(
        real=1,
        rounds=1,
        plugin_rounds=1,
        idle_seconds=1.0,
        settle_seconds=0.5,
        parallel=4,
        safety_listing_seconds=1.0,
    )
    result = run_n(cluster.kubeconfig, cluster.plane, 2, opts)

    assert result["ready_seconds"]["n"] == 2
    assert result["real_processes"] == {
        "engines": 1,
        "safety": 1,
        "seconds": result["real_processes"]["seconds"],
    }
    rest = result["at_rest"]
    assert rest["operator"]["rss_mb"] > 0
    assert rest["engine"]["processes"] == 1
    assert rest["safety"]["processes"] == 1
    # The simulated system's safety pod's listing, as the safety service lists (one list in the window).
    listing = result["safety_listing"]
    assert (listing["systems_listed"], listing["list_ms"]["n"], listing["failures"]) == (1, 1, 0)
    if cluster.plane is not None:  # our control plane: its API server's CPU is read
        assert "kube-apiserver" in listing["cpu_percent_with"]
    for path in ("patch", "plugin"):
        kill = result["kill_all"][path]
        assert kill["engaged_ms"]["n"] == 2, path
        assert kill["halted_ms"]["n"] == 1, path
        # The real engine acknowledged; the simulated one (no process) could not be reached.
        assert kill["status_reasons"].get("Acknowledged") == 1, kill["status_reasons"]
    assert "| N TradingSystems | 2 |" in format_table({2: result})

    # Cleaned up: no namespace left behind (the benchmark waits for its deletion).
    with pytest.raises(client.ApiException) as gone:
        client.CoreV1Api(kube_api).read_namespace(result["namespace"])
    assert gone.value.status == 404
