"""The operator SIGKILLed at the worst moments: in the middle of creating a TradingSystem's children, and
after it sent a kill-switch push but before it recorded the acknowledgement. A restarted operator must
converge: every child exactly once, never two engines, status current, the kill neither lost nor released.
"""

from __future__ import annotations

import base64
import threading
import time

import pytest
from kubernetes import client
from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION

from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.faults.delay_proxy import DelayProxy
from tests.faults.harness import Faults, engine_pods
from tests.operator.slow_webhook import SlowWebhook

pytestmark = pytest.mark.slow


def conditions(stack: TradingSystemStack) -> dict[str, dict]:
    return {c["type"]: c for c in (stack.get().get("status") or {}).get("conditions") or []}


def converged(stack: TradingSystemStack) -> dict | None:
    """The TradingSystem once Ready=True and status describes the current generation."""
    ts = stack.get()
    st = ts.get("status") or {}
    ready = conditions(stack).get("Ready") or {}
    current = st.get("observedGeneration") == ts["metadata"]["generation"]
    return ts if current and ready.get("status") == "True" else None


class EngineCounter:
    """Samples, in the background, how many engine StatefulSets and live engine pods exist."""

    def __init__(self, stack: TradingSystemStack) -> None:
        self.stack = stack
        self.max_sets = 0
        self.max_pods = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        apps = client.AppsV1Api(self.stack.api)
        while not self._stop.is_set():
            try:
                sets = apps.list_namespaced_stateful_set(
                    self.stack.namespace, label_selector=f"trading.quantzoo.io/system={self.stack.name}"
                ).items
                self.max_sets = max(self.max_sets, len(sets))
                self.max_pods = max(self.max_pods, len(engine_pods(self.stack)))
            except client.ApiException:
                pass
            self._stop.wait(0.1)

    def __enter__(self) -> EngineCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _admin_token(stack: TradingSystemStack) -> str | None:
    try:
        secret = stack.core.read_namespaced_secret(f"{stack.name}-engine-admin", stack.namespace)
    except client.ApiException:
        return None
    return base64.b64decode((secret.data or {}).get("token", "")).decode() or None


@pytest.mark.parametrize("moment", ["statefulset-create-held", "first-child-appeared"])
def test_operator_killed_mid_reconcile_converges_with_every_child_once(
    faults: Faults, kube_api: client.ApiClient, moment: str
) -> None:
    hook = None
    if moment == "statefulset-create-held":
        # The operator's create of the engine StatefulSet sits in the API server's admission chain.
        hook = SlowWebhook(kube_api, faults.namespace, max_hold=20, operations=("CREATE",)).start()
    faults.operators.start()
    stack = faults.stack()
    try:
        with EngineCounter(stack) as counter:
            if hook is not None:
                assert hook.arrived.wait(30), "the operator never tried to create the StatefulSet"
            else:
                wait_for(
                    lambda: _admin_token(stack) is not None,
                    timeout=30,
                    interval=0.01,
                    what="the first child (the admin Secret)",
                )
            faults.operators.sigkill()
            token_before = _admin_token(stack)
            if hook is not None:
                hook.stop()
                hook = None
            faults.operators.start()
            wait_for(lambda: converged(stack), timeout=60, what="Ready with a current observedGeneration")
            # Let the restarted operator and the controllers settle, still sampling.
            time.sleep(2)
        assert counter.max_sets == 1, f"{counter.max_sets} engine StatefulSets at once"
        assert counter.max_pods <= 1, f"{counter.max_pods} engine pods at once"
    finally:
        if hook is not None:
            hook.stop()
    conds = conditions(stack)
    assert conds["Ready"]["status"] == "True"
    assert conds.get("Degraded", {}).get("status") != "True", conds.get("Degraded")
    # A token created before the kill is the token the engine gets: a Secret is created once, not redone.
    if token_before is not None:
        assert _admin_token(stack) == token_before
    faults.assert_no_leaks(stack)


def _halted(stack: TradingSystemStack) -> bool:
    st = stack.engine_state()
    return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]


def _events(stack: TradingSystemStack, reason: str) -> int:
    items = stack.core.list_namespaced_event(
        stack.namespace, field_selector=f"involvedObject.name={stack.name},reason={reason}"
    ).items
    return sum(e.count or 1 for e in items)


def test_operator_killed_mid_propagation_kill_is_not_lost_nor_released(faults: Faults) -> None:
    # A push deadline above the proxy's round trip (2 x 0.6 s) with room for a loaded machine.
    faults.operators.start(QUANTZOO_OPERATOR_PUSH_TIMEOUT_SECONDS="5")
    stack = faults.stack()
    engine = stack.run_engine()
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
    proxy = DelayProxy("127.0.0.1", int(engine.url.rsplit(":", 1)[1]), delay=0.6).start()
    try:
        stack.core.patch_namespaced_pod(
            engine.pod, stack.namespace, {"metadata": {"annotations": {ADMIN_ENDPOINT_ANNOTATION: proxy.url}}}
        )
        stack.patch({"spec": {"killSwitch": {"engaged": True, "reason": "fault 2", "operator": "gina"}}})
        # The push has left the operator (the proxy holds it): now the operator dies.
        wait_for(lambda: proxy.chunks_in > 0, timeout=15, interval=0.005, what="the operator's push")
        faults.operators.sigkill()
        assert stack.acknowledged() is None, "the acknowledgement was recorded before the SIGKILL"
        # The engine's own watch halts it meanwhile.
        wait_for(lambda: _halted(stack), timeout=15, what="engine halted by its own watch")
        faults.operators.start(QUANTZOO_OPERATOR_PUSH_TIMEOUT_SECONDS="5")
        ks = wait_for(stack.acknowledged, timeout=30, what="every replica's acknowledgement")
        assert [a["replica"] for a in ks["acknowledgements"]] == [engine.pod]
        assert ks["acknowledgements"][0]["latencyMs"] >= 1000  # it went through the slow link
        assert ks["by"] == "gina"
        spec = stack.get()["spec"]["killSwitch"]
        assert spec["engaged"] is True
        assert "release" not in spec
        assert _halted(stack)
        wait_for(lambda: _events(stack, "KillSwitchEngaged") >= 1, timeout=15, what="the kill's Event")
        time.sleep(1.5)  # a duplicate would be posted right after the first
        assert _events(stack, "KillSwitchEngaged") == 1
        assert _events(stack, "KillSwitchReleased") == 0
        wait_for(
            lambda: conditions(stack).get("Degraded", {}).get("status") == "False",
            timeout=30,
            what="Degraded=False",
        )
        assert conditions(stack)["KillSwitchEngaged"]["status"] == "True"
        assert stack.place_order("AAPL", "buy", 1).status_code == 409
    finally:
        proxy.stop()
    faults.assert_no_leaks(stack)
