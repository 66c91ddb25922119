"""The network between the operator and an engine made worse: a TCP proxy on loopback (delay_proxy.py) is
the engine pod's admin endpoint. Latency below the push deadline: the kill is acknowledged, with the
latency recorded. A blackhole beyond it: Degraded with the replica named unreachable, retries go on, and
once the link recovers the kill is acknowledged and Degraded clears -- three times over, with the
operator's file descriptors not growing from one fault to the next.
"""

from __future__ import annotations

import time

import pytest
from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION, engage_patch, kill_switch_of, release_patch_for

from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.faults.delay_proxy import DelayProxy
from tests.faults.harness import Faults
from tests.faults.test_operator_faults import conditions

pytestmark = pytest.mark.slow

DELAY = 0.3  # each way: about 0.6 s a push, under the 2 s push deadline (FAULT_ENV)


def _halted(stack: TradingSystemStack) -> bool:
    st = stack.engine_state()
    return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]


def _acked_for(stack: TradingSystemStack, reason: str) -> dict | None:
    ks = stack.acknowledged()
    return ks if ks and ks.get("reason") == reason else None


def _degraded(stack: TradingSystemStack) -> str | None:
    cond = conditions(stack).get("Degraded") or {}
    return cond.get("status")


def test_latency_is_recorded_and_a_blackhole_degrades_until_the_link_recovers(faults: Faults) -> None:
    faults.operators.start()
    stack = faults.stack()
    engine = stack.run_engine()
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
    proxy = DelayProxy("127.0.0.1", int(engine.url.rsplit(":", 1)[1]), delay=DELAY).start()
    try:
        stack.core.patch_namespaced_pod(
            engine.pod, stack.namespace, {"metadata": {"annotations": {ADMIN_ENDPOINT_ANNOTATION: proxy.url}}}
        )
        # 1. Latency under the deadline: acknowledged, and the latency is what the link costs.
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
        proxy.delay = 0.0
        fds: list[int] = []

        # 2. A blackhole beyond the deadline, three times: Degraded, retries, recovery.
        for cycle in range(3):
            reason = f"blackhole {cycle}"
            proxy.blackhole = True
            pushes_before = proxy.connections
            stack.patch(engage_patch(reason=reason, operator="kim", source="kubectl"))
            wait_for(lambda: _halted(stack), timeout=15, what="halted by the engine's own watch")
            wait_for(lambda: _degraded(stack) == "True", timeout=30, what="Degraded while unreachable")
            degraded = conditions(stack)["Degraded"]
            assert degraded["reason"] == "KillSwitchUnacknowledged"
            message = conditions(stack)["KillSwitchEngaged"]["message"]
            assert engine.pod in message, message
            assert "unreachable" in message, message
            assert "no answer within" in message, message
            # Retries continue while it is unreachable.
            wait_for(lambda n=pushes_before: proxy.connections >= n + 2, timeout=30, what="pushes retried")
            assert stack.acknowledged() is None or stack.acknowledged()["reason"] != reason
            proxy.blackhole = False
            wait_for(lambda r=reason: _acked_for(stack, r), timeout=30, what="acknowledged once it recovers")
            wait_for(lambda: _degraded(stack) == "False", timeout=30, what="Degraded cleared")
            stack.patch(
                release_patch_for(kill_switch_of(stack.get()), operator="kim", reason=f"after {reason}")
            )
            wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="released")
            time.sleep(1.0)  # idle keep-alive connections settle
            fds.append(faults.operators.fd_count())
        print(f"operator file descriptors after each blackhole cycle: {fds}")
        # Generous slack for pooled connections; a descriptor leaked per blackholed push would exceed it.
        assert fds[-1] <= fds[0] + 4, fds
    finally:
        proxy.stop()
    faults.assert_no_leaks(stack)
