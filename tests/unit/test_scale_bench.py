"""The scale benchmark's pure parts: what counts as 'engaged in status', 'halted', and the figures."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from bench.scale_bench import (
    format_table,
    halted_since,
    is_ready,
    percentiles,
    summarise_rounds,
    switch_in_status,
    targets_met,
)


def _ts(gen: int, *, ks: dict | None = None, cond: dict | None = None, ready: str = "True") -> dict:
    conditions = [{"type": "Ready", "status": ready}]
    if cond is not None:
        conditions.append({"type": "KillSwitchEngaged", **cond})
    return {"metadata": {"generation": gen}, "status": {"conditions": conditions, "killSwitch": ks or {}}}


def test_engaged_in_status_needs_the_operators_write_for_a_newer_generation() -> None:
    written = _ts(
        4,
        ks={"engaged": True, "generation": 4},
        cond={"status": "True", "reason": "Unacknowledged", "observedGeneration": 4},
    )
    assert switch_in_status(written, engaged=True, after_generation=3)
    # The operator's record of an earlier engage does not count for this kill-all.
    assert not switch_in_status(written, engaged=True, after_generation=4)
    # The spec echo alone (nothing written by the operator yet) does not count.
    spec_only = {"metadata": {"generation": 4}, "spec": {"killSwitch": {"engaged": True}}, "status": {}}
    assert not switch_in_status(spec_only, engaged=True, after_generation=3)
    # status.killSwitch without the condition of the same apply does not count either.
    half = _ts(4, ks={"engaged": True, "generation": 4}, cond={"status": "False", "observedGeneration": 3})
    assert not switch_in_status(half, engaged=True, after_generation=3)
    released = _ts(
        5,
        ks={"engaged": False, "generation": 5},
        cond={"status": "False", "reason": "Released", "observedGeneration": 5},
    )
    assert switch_in_status(released, engaged=False, after_generation=4)
    assert not switch_in_status(released, engaged=True, after_generation=4)


def test_ready_is_the_ready_condition() -> None:
    assert is_ready(_ts(1))
    assert not is_ready(_ts(1, ready="False"))
    assert not is_ready({"metadata": {}})


def test_halted_since_reads_the_engines_own_timestamp_for_a_newer_generation() -> None:
    state = {
        "trading_state": "HALTED",
        "kill_switch": {"engaged": True, "generation": 7, "since": "2026-01-02T03:04:05.250000Z"},
    }
    assert halted_since(state, 6) == datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    assert halted_since(state, 7) is None
    assert halted_since({**state, "trading_state": "ACTIVE"}, 6) is None


def test_percentiles_nearest_rank() -> None:
    p = percentiles([float(i) for i in range(1, 101)])
    assert (p["n"], p["p50"], p["p90"], p["p99"], p["max"]) == (100, 50.5, 90.0, 99.0, 100.0)
    assert percentiles([]) == {"n": 0}
    assert percentiles([3.0])["p99"] == 3.0


def _round(engaged: list[float], halted: list[float]) -> dict:
    return {
        "issue_ms": 10.0,
        "all_engaged_ms": max(engaged),
        "engaged_ms": engaged,
        "engaged_after_own_patch_ms": engaged,
        "halted_ms": halted,
        "status_reasons": {"Acknowledged": 1, "Unacknowledged": 1},
    }


def _per_n(n: int, *, ready_max: float, rss: float, engaged: list[list[float]]) -> dict:
    return {
        "ready_seconds": {"n": n, "p50": ready_max / 2, "max": ready_max},
        "at_rest": {
            "operator": {"rss_mb": rss, "cpu_percent": 0.4},
            "engine": {"rss_mb_median": 68.0},
            "safety": {"rss_mb_median": 72.0},
        },
        "kill_all": {"patch": summarise_rounds([_round(e, [50.0]) for e in engaged])},
    }


def test_targets_are_judged_at_100_on_the_worst_round() -> None:
    per_n = {100: _per_n(100, ready_max=40.0, rss=150.0, engaged=[[100.0, 900.0], [200.0, 2500.0]])}
    met = targets_met(per_n)
    assert met["ready_all_seconds_at_100"]["met"] is True
    assert met["operator_rss_mb_at_100"]["met"] is True
    assert met["killall_engaged_all_seconds_at_100"] == {"target": 2.0, "measured": 2.5, "met": False}
    assert all(v["met"] is None for v in targets_met({10: per_n[100]}).values())
    summary = per_n[100]["kill_all"]["patch"]
    assert summary["engaged_ms"]["n"] == 4
    assert summary["all_engaged_ms_median_round"] == 1700.0
    assert not math.isnan(summary["all_engaged_ms_worst_round"])


def test_the_table_has_one_column_per_n_and_a_dash_for_what_was_not_run() -> None:
    per_n = {
        10: _per_n(10, ready_max=3.0, rss=95.0, engaged=[[100.0, 200.0]]),
        100: _per_n(100, ready_max=40.0, rss=150.0, engaged=[[300.0, 900.0]]),
    }
    table = format_table(per_n).splitlines()
    assert table[0] == "| N TradingSystems | 10 | 100 |"
    assert any(line.startswith("| operator RSS at rest (MB) | 95 | 150 |") for line in table)
    assert table[-1].endswith("| - | - |")  # no plugin rounds


def test_api_requests_are_counted_per_verb_and_resource_from_the_api_servers_metrics() -> None:
    from bench.scale_bench import count_requests, request_delta

    text = "\n".join(
        [
            "# HELP apiserver_request_total Counter of apiserver requests",
            'apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",'
            'scope="namespace",subresource="",verb="LIST",version="v1"} 7',
            'apiserver_request_total{code="200",component="apiserver",dry_run="",group="trading.quantzoo.io",'
            'resource="tradingsystems",scope="resource",subresource="status",verb="APPLY",'
            'version="v1alpha1"} 3',
            'apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",'
            'scope="namespace",subresource="",verb="LIST",version="v1"} 1',
            'apiserver_request_total{code="0",component="apiserver",dry_run="",group="",resource="pods",'
            'scope="namespace",subresource="",verb="WATCH",version="v1"} 2',
        ]
    )
    counts = count_requests(text)
    assert counts == {"LIST pods": 8.0, "APPLY tradingsystems/status": 3.0, "WATCH pods": 2.0}
    later = {**counts, "LIST pods": 20.0, "WATCH pods": 9.0}
    assert request_delta(counts, later) == {"LIST pods": 12}
