"""Latency between the operator and an engine: a TCP proxy on loopback (delay_proxy.py) is the engine
pod's admin endpoint. Below the push deadline the kill is acknowledged, with the latency recorded.

Kept as processes because the real node cannot delay a pod's packets: this kernel has no netem qdisc
(`tc qdisc ... netem` is refused). The link black-holed (Degraded, retries, recovery, three times over,
the operator's file descriptors steady) runs on real pods: tests/pods/test_faults_realpods.py.
"""

from __future__ import annotations

import pytest
from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION, engage_patch, kill_switch_of, release_patch_for

from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.faults.delay_proxy import DelayProxy
from tests.faults.harness import Faults, conditions

pytestmark = pytest.mark.slow

DELAY = 0.3  # each way: about 0.6 s a push, under the 2 s push deadline (FAULT_ENV)


def _acked_for(stack: TradingSystemStack, reason: str) -> dict | None:
    ks = stack.acknowledged()
    return ks if ks and ks.get("reason") == reason else None


def _degraded(stack: TradingSystemStack) -> str | None:
    cond = conditions(stack).get("Degraded") or {}
    return cond.get("status")


def test_latency_under_the_push_deadline_is_acknowledged_and_recorded(faults: Faults) -> None:
    faults.operators.start()
    stack = faults.stack()
    engine = stack.run_engine()
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
    proxy = DelayProxy("127.0.0.1", int(engine.url.rsplit(":", 1)[1]), delay=DELAY).start()
    try:
        stack.core.patch_namespaced_pod(
            engine.pod, stack.namespace, {"metadata": {"annotations": {ADMIN_ENDPOINT_ANNOTATION: proxy.url}}}
        )
        # Acknowledged, and the latency is what the link costs.
        stack.patch(engage_patch(reason="slow link", operator="kim", source="kubectl"))
        ks = wait_for(
            lambda: _acked_for(stack, "slow link"), timeout=30, what="acknowledged over the slow link"
        )
        assert ks["acknowledgements"][0]["latencyMs"] >= 2 * DELAY * 1000 * 0.9
        assert ks["propagationLatencyMs"] >= ks["acknowledgements"][0]["latencyMs"] * 0.9
        assert proxy.connections >= 1
        stack.patch(release_patch_for(kill_switch_of(stack.get()), operator="kim", reason="link test"))
        wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="released")
        wait_for(lambda: _degraded(stack) == "False", timeout=30, what="Degraded=False")
    finally:
        proxy.stop()
    faults.assert_no_leaks(stack)
