"""The safety service and the kubectl plugin against a REAL kube-apiserver with the TradingSystem CRD
(fixtures `kube_api`, `kube_config`, `namespace` from tests/conftest.py). The engine is still the stand-in."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client as k8s
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_safety import kubectl_plugin
from quantzoo_safety.kube import KubeRefused, TradingSystemClient, TradingSystems
from safety_support import ACTIVATE, AUTH, closed_port, engine_pod

pytestmark = pytest.mark.cluster


def create_ts(api: k8s.ApiClient, namespace: str, name: str = "demo", spec: dict | None = None) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {},
    }
    return k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def read_ts(api: k8s.ApiClient, namespace: str, name: str = "demo") -> dict:
    return k8s.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def kill_switch(api: k8s.ApiClient, namespace: str, name: str = "demo") -> dict:
    return read_ts(api, namespace, name)["spec"]["killSwitch"]


@pytest.fixture
def ts(kube_api, namespace) -> Iterator[TradingSystemClient]:
    create_ts(kube_api, namespace)
    kube = TradingSystemClient(kube_api, namespace, "demo", timeout=5.0)
    yield kube
    kube.close()


def test_activate_patches_spec_kill_switch(make_client, engine, kube_api, namespace, ts):
    with make_client(ts, namespace=namespace) as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["kubernetes"] == "patched"
        assert r.json()["engine"] == "halted"
    ks = kill_switch(kube_api, namespace)
    assert ks["engaged"] is True
    assert ks["closePositions"] is True
    assert ks["operator"] == "alice"
    assert ks["reason"] == ACTIVATE["reason"]
    assert ks["source"] == "safety-api"
    assert ks["mode"] == "Halt"
    managers = {m["manager"] for m in read_ts(kube_api, namespace)["metadata"]["managedFields"]}
    assert "quantzoo-safety" in managers


def test_concurrent_activations_leave_the_first_who_and_why(make_client, kube_api, namespace, ts):
    with make_client(ts, namespace=namespace) as c:

        def activate(i):
            return c.post("/kill-switch/activate", json={**ACTIVATE, "operator": f"op{i}"}, headers=AUTH)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(activate, range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(a.json()["status"] for a in answers) == ["already engaged"] * 5 + ["engaged"]
    winner = next(a.json()["kill_switch"]["operator"] for a in answers if a.json()["status"] == "engaged")
    assert kill_switch(kube_api, namespace)["operator"] == winner


def test_deactivate_writes_a_release_record_the_cel_rule_accepts(make_client, kube_api, namespace, ts):
    with make_client(ts, namespace=namespace) as c:
        assert c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).status_code == 200
        r = c.post("/kill-switch/deactivate", json={"operator": "Your Name"}, headers=AUTH)
        assert r.status_code == 200, r.text
        ks = kill_switch(kube_api, namespace)
        assert ks["engaged"] is False
        assert ks["release"]["operator"] == "Your Name"
        assert ks["release"]["reason"] == "released via safety API"
        # A second cycle needs (and gets) a new release record.
        assert c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()["status"] == "engaged"
        r = c.post("/kill-switch/deactivate", json={"operator": "bob", "reason": "fixed"}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert kill_switch(kube_api, namespace)["release"]["operator"] == "bob"
        assert c.post("/kill-switch/deactivate", json={"operator": "bob"}, headers=AUTH).status_code == 409


def test_release_without_a_new_record_is_refused_by_the_api_server(
    make_client, kube_api, namespace, ts, monkeypatch
):
    with make_client(ts, namespace=namespace) as c:
        c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        monkeypatch.setattr(
            "quantzoo_safety.engagement.release_patch_for",
            lambda current, **kw: {"spec": {"killSwitch": {"engaged": False}}},
        )
        r = c.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
    assert r.status_code == 409
    assert "released only with a release record naming the engagement" in r.json()["detail"]
    assert kill_switch(kube_api, namespace)["engaged"] is True


def test_api_server_unreachable_halts_the_engine_then_records_it(
    make_client, engine, kube_api, namespace, ts
):
    """Activation while the client can reach no API server: the engine is halted directly; once the API
    server answers again the engagement is written into the real TradingSystem."""
    dead = k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{closed_port()}"))
    kube = TradingSystemClient(dead, namespace, "demo", timeout=1.0)
    with make_client(kube, namespace=namespace) as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 200
        assert r.json()["kubernetes"] == "unreachable"
        assert r.json()["engine"] == "halted"
        assert engine.engine.trading_state == "HALTED"
        assert kill_switch(kube_api, namespace)["engaged"] is False  # not recorded yet
        entry = c.ctx.audit.recent(1)[0]
        assert entry["kubernetes"] == "unreachable"
        assert c.post("/kill-switch/deactivate", json={"operator": "a"}, headers=AUTH).status_code == 503
        # The API server is reachable again (here: the client's connection is repaired).
        kube._systems = TradingSystems(kube_api, request_timeout=5, field_manager="quantzoo-safety")
        assert c.portal.call(c.ctx.killswitch.sync_pending).result == "patched"
    ks = kill_switch(kube_api, namespace)
    assert ks["engaged"] is True
    assert ks["operator"] == "alice"
    kube.close()


def test_watchdog_trip_is_accepted_by_the_api_server(make_client, engine, kube_api, namespace):
    create_ts(kube_api, namespace, spec={"risk": {"maxDailyDrawdownPct": 2.5}})
    kube = TradingSystemClient(kube_api, namespace, "demo", timeout=5.0)
    engine.engine.daily_drawdown_pct = 3.4
    with make_client(kube, namespace=namespace) as c:
        trip = c.portal.call(c.ctx.watchdog.check_once)
        assert trip is not None
    ks = kill_switch(kube_api, namespace)
    assert ks["reason"] == "auto:drawdown: daily drawdown 3.4% >= limit 2.5%"
    assert ks["operator"] == "safety-watchdog"
    assert ks["source"] == "auto"
    kube.close()


def test_status_and_safety_check_read_the_operator_status(make_client, engine, kube_api, namespace, ts):
    with make_client(ts, namespace=namespace) as c:
        c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        status = {
            "status": {
                "phase": "Halted",
                "killSwitch": {
                    "engaged": True,
                    "since": "2026-01-01T00:00:00Z",
                    "acknowledgements": [
                        {
                            "replica": "demo-engine-0",
                            "engaged": True,
                            "tradingState": "HALTED",
                            "latencyMs": 12.5,
                        }
                    ],
                },
            }
        }
        k8s.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "demo", status, _content_type="application/merge-patch+json"
        )
        full = c.get("/status", headers=AUTH).json()
        assert full["tradingsystem_status"]["phase"] == "Halted"
        assert full["tradingsystem_status"]["acknowledgements"][0]["replica"] == "demo-engine-0"
        assert full["kill_switch"]["since"] == "2026-01-01T00:00:00Z"
        assert full["apiserver"]["reachable"] is True
        public = c.get("/status").json()
        assert public == {"service": "ok", "kill_switch_engaged": True, "trading_state": "HALTED"}
        check = c.get("/test/safety-check", headers=AUTH).json()
        by_name = {x["name"]: x for x in check["checks"]}
        assert by_name["kill_switch_consistent"]["ok"] is True
        assert by_name["kill_switch_consistent"]["detail"] == "spec=engaged, status=engaged, engine=engaged"
        assert by_name["apiserver_reachable"]["ok"] is True


# ------------------------------------------------------------------------------------ kubectl plugin
def plugin(kube_api, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    systems = TradingSystems(kube_api, request_timeout=10, field_manager=kubectl_plugin.FIELD_MANAGER)
    code = kubectl_plugin.main(list(argv), systems=systems, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_plugin_kill_release_status(kube_api, namespace):
    create_ts(kube_api, namespace, "alpha")
    create_ts(kube_api, namespace, "beta")
    code, out, _ = plugin(
        kube_api, "kill", "alpha", "-n", namespace, "--reason", "runaway", "--operator", "al"
    )
    assert code == 0
    assert "ENGAGED" in out
    ks = kill_switch(kube_api, namespace, "alpha")
    assert (ks["engaged"], ks["operator"], ks["source"]) == (True, "al", "kubectl")
    code, out, _ = plugin(
        kube_api, "kill", "--all", "-n", namespace, "--reason", "market halt", "--close-positions"
    )
    assert code == 0
    assert "already engaged by al" in out
    assert "escalated closePositions" in out
    assert kill_switch(kube_api, namespace, "beta")["engaged"] is True
    assert kill_switch(kube_api, namespace, "alpha")["reason"] == "runaway"
    code, out, _ = plugin(kube_api, "status", "-n", namespace)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "MODE", "PHASE"]
    assert lines[1].startswith("alpha")
    assert "ENGAGED" in lines[1]
    assert "runaway" in lines[1]
    engagement = kill_switch(kube_api, namespace, "alpha")["engagedAt"]
    code, out, _ = plugin(
        kube_api, "release", "alpha", "-n", namespace, "--reason", "fixed", "--operator", "al"
    )
    assert code == 0
    assert kill_switch(kube_api, namespace, "alpha")["release"] == {
        "operator": "al",
        "reason": "fixed",
        "at": kill_switch(kube_api, namespace, "alpha")["release"]["at"],
        "engagedAt": engagement,  # the release names the engagement it ends
    }
    code, _, err = plugin(kube_api, "release", "alpha", "-n", namespace, "--reason", "again")
    assert code == 1
    assert "not engaged" in err


def test_plugin_errors_are_the_api_servers_words(kube_api, namespace):
    code, _, err = plugin(kube_api, "kill", "ghost", "-n", namespace, "--reason", "r")
    assert code == 1
    assert 'tradingsystems.trading.quantzoo.io "ghost" not found' in err
    create_ts(kube_api, namespace)
    plugin(kube_api, "kill", "demo", "-n", namespace, "--reason", "r")
    systems = TradingSystems(kube_api, field_manager="test")
    with pytest.raises(KubeRefused) as info:
        systems.merge_patch(namespace, "demo", {"spec": {"killSwitch": {"engaged": False}}})
    assert info.value.status == 422
    assert "released only with a release record naming the engagement" in info.value.message


def test_plugin_executable_uses_the_current_kubeconfig(kube_config, kube_api, namespace):
    create_ts(kube_api, namespace)
    exe = Path(sys.executable).parent / "kubectl-quantzoo"
    env = {**os.environ, "KUBECONFIG": str(kube_config), "USER": "night-shift"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    done = subprocess.run(
        [str(exe), "kill", "demo", "-n", namespace, "--reason", "from the terminal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ks = kill_switch(kube_api, namespace)
    assert ks["reason"] == "from the terminal"
    assert ks["operator"]  # the local user


def test_runbook_activate_halts_a_not_ready_engine_pod_listed_by_the_api_server(
    make_client, engine, kube_api, namespace, ts
):
    """Issue #15, finding 1 (safety side), with the real API server listing real Pod objects by label: a
    Running engine pod whose readiness fails (so out of the engine Service) is halted by the runbook curl.
    Not modelled: no kubelet runs these pods (their status is written here, and a scheduling gate keeps them
    off any node); the admin-endpoint annotation points at the stand-in engine as the pod runner does for
    simulated pods; the Service without a Ready endpoint is a closed loopback port."""
    core = k8s.CoreV1Api(kube_api)
    for name, endpoint in (
        ("demo-engine-0", engine.url),
        ("other-engine-0", f"http://127.0.0.1:{closed_port()}"),
    ):
        pod = engine_pod(name, endpoint, system="demo" if name.startswith("demo") else "other")
        pod["metadata"].pop("uid")
        pod["spec"] = {
            "containers": [{"name": "engine", "image": "quantzoo-not-run:0"}],
            "schedulingGates": [{"name": "quantzoo.test/not-run"}],
        }
        core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", **pod})
        core.patch_namespaced_pod_status(name, namespace, {"status": pod["status"]})
    with make_client(ts, namespace=namespace, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (r.json()["kubernetes"], r.json()["engine"]) == ("patched", "halted")
    assert r.json()["engine_pods"] == {"demo-engine-0": "HALTED"}  # not the other system's pod
    assert engine.engine.trading_state == "HALTED"
    assert kill_switch(kube_api, namespace)["engaged"] is True
