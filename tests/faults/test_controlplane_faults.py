"""etcd restarted under a running API server, the process edition: the engine, safety and operator run
as local processes against the control plane. The API server's restart, and etcd's too, run on real pods
(tests/pods/test_controlplane_faults_realpods.py); this edition stays for etcd until the real-pod one is
dependable: there, every run right after the API server's case (4 of 4) found the engine's Service
unreachable from the safety pod while etcd was down (the direct halt refused with 503), so that case is an
expected failure, not a proof.

During the outage the kill is engaged through the safety API (its direct halt); afterwards it must end
up in spec.killSwitch (the safety service's pending patch), the operator's and the engine's watches must
recover (later patches still propagate), status must converge, and the operator must not leak file
descriptors over the outage. The control plane is shared by the whole session: the test restores it fully,
even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

import httpx
import pytest
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for

from hack.devcluster.controlplane import ControlPlane
from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.faults.harness import Faults, conditions, converged

pytestmark = pytest.mark.slow


def _halted(stack: TradingSystemStack) -> bool:
    st = stack.engine_state()
    return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]


def _watch_saw(stack: TradingSystemStack, generation: int) -> bool:
    """Whether the engine logged a kill-switch command of `generation` from its own Kubernetes watch."""
    assert stack.engine is not None
    for line in stack.engine.log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if (
                str(entry.get("message", "")).startswith("kill-switch command")
                and entry.get("source") == "kubernetes-watch"
                and entry.get("generation") == generation
            ):
                return True
    return False


def _restore(plane: ControlPlane) -> None:
    if "etcd" not in plane.procs:
        plane.start_etcd()
    if "kube-apiserver" not in plane.procs:
        plane.start_apiserver()


def _outage(plane: ControlPlane, component: str, during: Callable[[], None]) -> None:
    stop = plane.stop_apiserver if component == "apiserver" else plane.stop_etcd
    start = plane.start_apiserver if component == "apiserver" else plane.start_etcd
    stop()
    try:
        during()
    finally:
        try:
            start()
        finally:
            _restore(plane)


def _settled_fds(faults: Faults) -> int:
    """The operator's fd count once idle keep-alive connections have had a moment to settle."""
    time.sleep(1.0)
    return faults.operators.fd_count()


@pytest.mark.parametrize("component", ["etcd"])
def test_control_plane_restart_kill_reaches_source_of_truth_and_watches_recover(
    faults: Faults, cluster, component: str
) -> None:
    if cluster.plane is None:
        pytest.skip("needs our own control plane to stop its parts")
    plane = cluster.plane
    faults.operators.start()
    stack = faults.stack()
    stack.run_engine()
    stack.run_safety()
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
    wait_for(lambda: converged(stack), timeout=30, what="Ready")
    fds_before = _settled_fds(faults)

    def activate_while_down() -> None:
        resp = httpx.post(
            stack.safety.url + "/kill-switch/activate",
            headers=stack.safety_headers(),
            json={"reason": f"{component} down", "close_positions": False, "operator": "hank"},
            timeout=30,
        )
        assert resp.status_code in (200, 202), resp.text
        assert "unreachable" in resp.text.lower()
        assert _halted(stack)  # the direct halt, with no API server to go through

    _outage(plane, component, activate_while_down)
    assert all(p.poll() is None for p in plane.procs.values()), "a control-plane process died"

    # The safety service's pending engagement reaches the source of truth.
    def engaged_in_spec() -> dict | None:
        ks = stack.get()["spec"].get("killSwitch") or {}
        return ks if ks.get("engaged") else None

    ks = wait_for(engaged_in_spec, timeout=45, what="the pending kill patched into spec.killSwitch")
    assert ks["operator"] == "hank"
    assert ks["source"] == "safety-api"
    wait_for(stack.acknowledged, timeout=30, what="the operator's acknowledgement after the outage")
    assert _halted(stack)

    # Both watches are back: a later patch (the explicit release) reaches the engine and the status.
    generation = stack.patch(
        release_patch_for(kill_switch_of(stack.get()), operator="hank", reason="control plane back")
    )["metadata"]["generation"]
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="released")
    # The engine's own watch saw it too (not only the operator's push).
    wait_for(
        lambda: _watch_saw(stack, generation), timeout=30, what="the engine's watch delivering the release"
    )

    def released_in_status() -> dict | None:
        ks = (stack.get().get("status") or {}).get("killSwitch") or {}
        acks = ks.get("acknowledgements") or []
        return ks if ks.get("engaged") is False and acks and not any(a["engaged"] for a in acks) else None

    wait_for(released_in_status, timeout=30, what="the release acknowledged in status")
    wait_for(lambda: converged(stack), timeout=30, what="Ready with a current observedGeneration")
    assert conditions(stack)["Degraded"]["status"] == "False"
    # An engage by patch after the outage also propagates; the operator's descriptors did not grow
    # (generous slack for pooled connections; a leaked watch, pool or thread per outage would exceed it).
    stack.patch(engage_patch(reason="after the outage", operator="hank", source="kubectl"))
    wait_for(lambda: _halted(stack), timeout=30, what="halted by a patch after the outage")
    wait_for(stack.acknowledged, timeout=30, what="acknowledged after the outage")
    fds_after = _settled_fds(faults)
    assert fds_after <= fds_before + 8, (fds_before, fds_after)
    faults.assert_no_leaks(stack)
