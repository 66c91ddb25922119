"""The operator SIGKILLed at the worst moments, as the chart's Deployment's real pod: its container killed
with the node's containerd (`ctr tasks kill --signal SIGKILL`), started again by the kubelet. A restarted
operator must converge: every child exactly once, never two engines, status current, a kill neither lost
nor released.

How close to the moment a kill lands (each test prints its figures):
- mid-reconcile, "statefulset-create-held": exactly inside it. The operator's create of the engine
  StatefulSet is held in the real API server's admission chain (tests/operator/slow_webhook.py, a
  validating webhook on this host, scoped to the test's namespace) while the container is killed (0.044 s
  after the create reached the webhook, the create still held).
- mid-reconcile, "first-child-appeared": the admin token Secret (the first child) is polled every 10 ms
  through the API server and the container killed as soon as it is seen: 0.026 s after the poll saw it in
  one run (a `ctr` process start), before the StatefulSet existed.
- mid-propagation: exactly between the push and its acknowledgement. The engine pod's process is stopped
  (SIGSTOP) before the patch, so the operator's push waits unread in the engine pod's socket; the test sees
  it there (the pod's /proc/<pid>/net/tcp, a connection from the operator pod's address with bytes
  queued: 0.036 s after the patch in one run), kills the operator 0.022 s later, then lets the engine run
  (SIGCONT). No process edition is kept: every moment is hit on the pod (the kwok edition's delay proxy
  could not serve here anyway: the operator's egress NetworkPolicy admits only engine and safety pods).

Each test: its own TradingSystem in its own namespace (the chart's image), deleted at the end. Each kill
grows the kubelet's restart back-off of the operator's container (10 s, 20 s, ...): the waits allow it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from quantzoo_api.killswitch import engage_patch

from tests.faults.harness import assert_children_owned
from tests.operator.slow_webhook import SlowWebhook
from tests.pods import faultsystem, operatorpod, realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.mark.parametrize("moment", ["statefulset-create-held", "first-child-appeared"])
def test_operator_pod_killed_mid_reconcile_converges_with_every_child_once(release, moment):
    op = operatorpod.pod(release)
    op_container, op_restarts = operatorpod.container(op), operatorpod.restarts(op)
    with faultsystem.system(release, f"opk-{uuid.uuid4().hex[:6]}", "opk") as s:
        hook = None
        if moment == "statefulset-create-held":
            hook = SlowWebhook(s.api, s.namespace, max_hold=25, operations=("CREATE",)).start()
        try:
            with faultsystem.EngineCounter(s) as counter:
                faultsystem.apply(s)
                if hook is not None:
                    assert hook.arrived.wait(60), "the operator never tried to create the StatefulSet"
                else:
                    realpods.wait_for(s.admin_token, 60, "the first child (the admin Secret)", interval=0.01)
                seen = time.monotonic()
                operatorpod.sigkill(release, op_container)
                killed = time.monotonic()
                sets_at_kill = s.engine_sets()
                token_before = s.admin_token()
                if hook is not None:
                    assert hook.holding, "the StatefulSet's create was let go before the kill"
                    hook.stop()
                    hook = None
                operatorpod.restarted(release, op_restarts)
                back = time.monotonic()
                realpods.wait_for(s.converged, 240, "Ready with a current observedGeneration")
                done = time.monotonic()
                time.sleep(2)  # the restarted operator and the controllers settle, still sampled
        finally:
            if hook is not None:
                hook.stop()
        print(
            f"\n{moment}: killed {killed - seen:.3f} s after the moment (StatefulSets then: {sets_at_kill}), "
            f"operator back {back - killed:.1f} s after the kill, converged {done - back:.1f} s after that"
        )
        assert counter.max_sets == 1, f"{counter.max_sets} engine StatefulSets at once"
        assert counter.max_pods <= 1, f"{counter.max_pods} engine pods at once"
        conds = s.conditions()
        assert conds["Ready"]["status"] == "True"
        assert conds.get("Degraded", {}).get("status") != "True", conds.get("Degraded")
        # A token created before the kill is the token the engine gets: a Secret is created once.
        if token_before is not None:
            assert s.admin_token() == token_before
        assert s.engine_sets() == [f"{s.name}-engine"]
        assert len(s.engine_pods()) == 1
        assert_children_owned(s.api, s)


def test_operator_pod_killed_mid_propagation_kill_is_not_lost_nor_released(release):
    op = operatorpod.pod(release)
    op_container, op_restarts, op_ip = (
        operatorpod.container(op),
        operatorpod.restarts(op),
        op["status"]["podIP"],
    )
    with faultsystem.system(release, f"opp-{uuid.uuid4().hex[:6]}", "opp") as s:
        faultsystem.apply(s)
        s.address_pods()
        realpods.wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", 60, "engine ACTIVE")
        realpods.wait_for(s.converged, 60, "Ready")
        engine_pod = realpods.kubectl_json(release, "-n", s.namespace, "get", "pod", s.engine.pod)
        engine_pid = realpods.task_pid(release, realpods.container_id(engine_pod, "engine"))
        os.kill(engine_pid, signal.SIGSTOP)
        try:
            time.sleep(0.3)
            before = faultsystem.pending_requests(engine_pid, 8001, op_ip)  # e.g. a state read in flight
            patched = time.monotonic()
            s.patch(engage_patch(reason="fault 2", operator="gina", source="kubectl"))
            realpods.wait_for(
                lambda: faultsystem.pending_requests(engine_pid, 8001, op_ip) - before,
                10,
                "the operator's push waiting in the engine pod's socket",
                interval=0.005,
            )
            seen = time.monotonic()
            operatorpod.sigkill(release, op_container)
            killed = time.monotonic()
            assert s.acknowledged() is None, "the acknowledgement was recorded before the SIGKILL"
        finally:
            os.kill(engine_pid, signal.SIGCONT)
        realpods.wait_for(s.halted, 20, "engine halted (its own watch, or the push it had not read)")
        halted = time.monotonic()
        operatorpod.restarted(release, op_restarts)
        back = time.monotonic()
        ks = realpods.wait_for(s.acknowledged, 60, "every replica's acknowledgement")
        acked = time.monotonic()
        print(
            f"\nmid-propagation: push seen {seen - patched:.3f} s after the patch, operator killed "
            f"{killed - seen:.3f} s later; engine halted {halted - killed:.1f} s after the kill; operator "
            f"back {back - killed:.1f} s after the kill, acknowledged {acked - back:.1f} s after that"
        )
        assert [a["replica"] for a in ks["acknowledgements"]] == [s.engine.pod]
        assert ks["by"] == "gina"
        spec = s.get()["spec"]["killSwitch"]
        assert spec["engaged"] is True
        assert "release" not in spec
        assert s.halted()
        realpods.wait_for(lambda: s.events("KillSwitchEngaged") >= 1, 30, "the kill's Event")
        time.sleep(1.5)  # a duplicate would be posted right after the first
        assert s.events("KillSwitchEngaged") == 1
        assert s.events("KillSwitchReleased") == 0
        realpods.wait_for(
            lambda: s.conditions().get("Degraded", {}).get("status") == "False", 60, "Degraded=False"
        )
        assert s.conditions()["KillSwitchEngaged"]["status"] == "True"
        assert s.place_order("AAPL", "buy", 1).status_code == 409
        assert_children_owned(s.api, s)
