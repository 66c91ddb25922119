"""Issue #15, finding 1 (safety side): the direct halt reaches every live engine pod by pod IP, Ready or
not -- a wedged engine fails its readiness probe, drops out of the engine Service's endpoints and may
still trade -- and falls back to the Service's address when the API server cannot list the pods.

Stand-ins: the TradingSystem and its pods (safety_fake_kube: the pod list is what the test sets), the
engine (safety_fake_engine on loopback, its address in the admin-endpoint annotation as the pod runner
does for simulated pods), and "the Service has no Ready endpoint" is a closed loopback port. A real
kube-apiserver listing real Pod objects is in test_safety_cluster.py.
"""

from __future__ import annotations

import asyncio

from safety_support import ACTIVATE, AUTH, closed_port, engine_pod


def test_runbook_activate_halts_a_not_ready_engine_the_service_does_not_reach(make_client, engine, fake_kube):
    service = f"http://127.0.0.1:{closed_port()}"  # no Ready endpoint behind the engine Service
    fake_kube.pods = [
        engine_pod("demo-engine-0", engine.url, ready=False),
        engine_pod("demo-engine-old", f"http://127.0.0.1:{closed_port()}", phase="Succeeded"),
    ]
    with make_client(fake_kube, engine_url=service) as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["kubernetes"], body["engine"]) == ("patched", "halted")
        assert body["engine_pods"] == {"demo-engine-0": "HALTED"}  # the finished pod is not dialled
        assert c.ctx.audit.recent(1)[0]["engine_pods"] == {"demo-engine-0": "HALTED"}
    assert engine.engine.trading_state == "HALTED"
    assert engine.engine.commands[-1].engaged is True


def test_every_live_pod_is_halted_and_a_dead_one_is_named(make_client, engine, fake_kube):
    dead = f"http://127.0.0.1:{closed_port()}"
    fake_kube.pods = [engine_pod("demo-engine-0", engine.url, ready=True), engine_pod("demo-engine-1", dead)]
    with make_client(fake_kube, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        body = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()
    assert body["engine"] == "halted"
    assert body["engine_pods"] == {"demo-engine-0": "HALTED", "demo-engine-1": "unreachable"}
    assert "demo-engine-1" in body["engine_detail"]


def test_api_server_down_falls_back_to_the_service_address(make_client, engine, fake_kube):
    fake_kube.unreachable = True
    fake_kube.pods = [engine_pod("demo-engine-0", f"http://127.0.0.1:{closed_port()}")]  # not listable
    with make_client(fake_kube) as c:  # engine_url: the stand-in engine, reached as through the Service
        body = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()
    assert (body["kubernetes"], body["engine"]) == ("unreachable", "halted")
    assert body["engine_pods"] == {engine.url: "HALTED"}
    assert engine.engine.trading_state == "HALTED"


def test_control_plane_down_the_pods_last_listed_are_dialled_beside_the_service(
    make_client, engine, fake_kube
):
    """etcd (or the API server) down: the pods cannot be listed, and the Service's name and address depend
    on CoreDNS and kube-proxy, which follow the control plane (on a real node its address was refused after
    an API server restart with etcd down): the pods listed before the outage are dialled by IP as well."""
    service = f"http://127.0.0.1:{closed_port()}"  # the Service, unreachable in the outage
    fake_kube.pods = [engine_pod("demo-engine-0", engine.url, ready=True)]
    with make_client(fake_kube, engine_url=service) as c:
        asyncio.run(c.ctx.killswitch._engine_targets())  # what the background refresh does every 30 s
        fake_kube.unreachable = True
        body = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()
    assert (body["kubernetes"], body["engine"]) == ("unreachable", "halted")
    assert body["engine_pods"] == {"demo-engine-0": "HALTED", service: "unreachable"}
    assert engine.engine.trading_state == "HALTED"


def test_no_engine_pod_listed_falls_back_to_the_service_address(client, engine, fake_kube):
    assert fake_kube.pods == []
    body = client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()
    assert body["engine"] == "halted"
    assert body["engine_pods"] == {engine.url: "HALTED"}
