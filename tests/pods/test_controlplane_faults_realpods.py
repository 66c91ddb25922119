"""The control plane restarted under running real pods: kube-apiserver stopped and started again, and etcd
stopped and started again under a running API server, while the chart's operator pod and a TradingSystem's
engine and safety pods keep running on the node. During the outage the kill is engaged through the safety
pod's API (its direct halt of the engine pod, over the pod network); afterwards it must end up in
spec.killSwitch (the safety service's pending patch), the operator pod's and the engine pod's watches
must recover (a later patch still propagates, and the engine's own watch delivers it), status must
converge, and the operator's process (its open descriptors counted in /proc on this host, which is the
node) must not grow them over the outage.

The control plane is the session's: whatever a test stops is started again in a `finally`.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for

from hack.devcluster import controlplane
from tests.faults.harness import assert_children_owned
from tests.pods import faultsystem, operatorpod, realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _restore(plane: controlplane.ControlPlane) -> None:
    if "etcd" not in plane.procs:
        plane.start_etcd()
    if "kube-apiserver" not in plane.procs:
        plane.start_apiserver()


def _settled_fds(release) -> int:
    """The operator's fd count once idle keep-alive connections have had a moment to settle."""
    time.sleep(1.0)
    return operatorpod.fd_count(release)


def _evidence(s: faultsystem.System) -> str:
    """What a failed direct halt leaves to read: the engine pod's restarts and the safety pod's last lines."""
    assert s.engine is not None
    assert s.safety is not None
    engine = realpods.kubectl_json(s.cluster, "-n", s.namespace, "get", "pod", s.engine.pod)
    restarts = [c["restartCount"] for c in engine["status"]["containerStatuses"]]
    return f"engine restarts {restarts}; safety log:\n{s.safety.tail(25)}"


@pytest.mark.parametrize(
    "component",
    ["apiserver", "etcd"],
)
def test_control_plane_restarted_under_real_pods_kill_reaches_spec_and_watches_recover(release, component):
    plane = release.plane
    with faultsystem.system(release, f"cp-{uuid.uuid4().hex[:6]}", "cp") as s:
        faultsystem.apply(s)
        s.address_pods()
        realpods.wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", 60, "engine ACTIVE")
        realpods.wait_for(s.converged, 60, "Ready")
        op_restarts = operatorpod.restarts(operatorpod.pod(release))
        fds_before = _settled_fds(release)
        headers = s.safety_headers()  # read while the API server answers
        stop = plane.stop_apiserver if component == "apiserver" else plane.stop_etcd
        start = plane.start_apiserver if component == "apiserver" else plane.start_etcd

        stop()
        down = time.monotonic()
        try:
            resp = httpx.post(
                s.safety.url + "/kill-switch/activate",
                headers=headers,
                json={"reason": f"{component} down", "close_positions": False, "operator": "hank"},
                timeout=60,
            )
            answered = time.monotonic()
            halted = s.halted()  # the direct halt, with no API server to go through
        finally:
            try:
                start()
            finally:
                _restore(plane)
        if resp.status_code not in (200, 202):  # pytest.fail: the whole evidence, not a truncated repr
            pytest.fail(f"direct halt refused: {resp.status_code} {resp.text}\n{_evidence(s)}")
        assert "unreachable" in resp.text.lower()
        assert halted, _evidence(s)
        up = time.monotonic()
        assert all(p.poll() is None for p in plane.procs.values()), "a control-plane process died"

        # The safety pod's pending engagement reaches the source of truth.
        def engaged_in_spec() -> dict | None:
            ks = s.get()["spec"].get("killSwitch") or {}
            return ks if ks.get("engaged") else None

        ks = realpods.wait_for(engaged_in_spec, 90, "the pending kill patched into spec.killSwitch")
        in_spec = time.monotonic()
        assert ks["operator"] == "hank"
        assert ks["source"] == "safety-api"
        realpods.wait_for(s.acknowledged, 90, "the operator's acknowledgement after the outage")
        acked = time.monotonic()
        assert s.halted()

        # Both watches are back: a later patch (the explicit release) reaches the engine and the status.
        generation = s.patch(
            release_patch_for(kill_switch_of(s.get()), operator="hank", reason="plane back")
        )["metadata"]["generation"]
        realpods.wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", 60, "released")
        # The engine pod's own watch saw it too (not only the operator's push).
        realpods.wait_for(lambda: s.watch_saw(generation), 60, "the engine's watch delivering the release")

        def released_in_status() -> dict | None:
            ks = (s.get().get("status") or {}).get("killSwitch") or {}
            acks = ks.get("acknowledgements") or []
            return ks if ks.get("engaged") is False and acks and not any(a["engaged"] for a in acks) else None

        realpods.wait_for(released_in_status, 60, "the release acknowledged in status")
        realpods.wait_for(s.converged, 60, "Ready with a current observedGeneration")
        converged = time.monotonic()
        assert s.conditions()["Degraded"]["status"] == "False"
        # An engage by patch after the outage also propagates.
        s.patch(engage_patch(reason="after the outage", operator="hank", source="kubectl"))
        realpods.wait_for(s.halted, 30, "halted by a patch after the outage")
        realpods.wait_for(s.acknowledged, 60, "acknowledged after the outage")
        # The same operator process throughout (its liveness does not hang on the API server), and its
        # descriptors did not grow (generous slack for pooled connections; a leaked watch, pool or thread
        # per outage would exceed it).
        assert operatorpod.restarts(operatorpod.pod(release)) == op_restarts
        fds_after = _settled_fds(release)
        print(
            f"\n{component}: safety answered {answered - down:.2f} s into the outage (engine halted), "
            f"{component} back {up - down:.1f} s after it stopped; kill in spec {in_spec - up:.1f} s and "
            f"acknowledged {acked - up:.1f} s after that, release converged {converged - acked:.1f} s; "
            f"operator fds {fds_before} -> {fds_after}"
        )
        assert fds_after <= fds_before + 8, (fds_before, fds_after)
        assert_children_owned(s.api, s)
