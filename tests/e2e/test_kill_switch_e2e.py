"""The kill-switch contract end to end: real kube-apiserver, real operator, real engine and safety
processes (run as their kwok pods would run them: hack/devcluster/podrunner.py).

Each test builds its own TradingSystem in a fresh namespace; one operator watches them all for the module.
"""

from __future__ import annotations

import concurrent.futures
import uuid

import httpx
import pytest
import yaml
from quantzoo_api.killswitch import engage_patch

from hack.devcluster.podrunner import wait_for
from hack.devcluster.stack import TradingSystemStack, start_operator

pytestmark = pytest.mark.slow

# A fast feed and a strategy that trades within seconds; limits loose enough for the test orders.
SPEC = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 4, "orderQuantity": 5}},
    "marketData": {"kind": "simulated", "seed": 11, "intervalSeconds": 0.05},
    "risk": {"maxOrdersPerSecond": 50, "maxOrdersPerMinute": 3000, "staleDataSeconds": 30},
}


@pytest.fixture
def stack(kube_api, runner, namespace, operator_process) -> TradingSystemStack:
    s = TradingSystemStack(kube_api, runner, namespace, f"ts-{uuid.uuid4().hex[:6]}")
    s.create(SPEC)
    s.run_engine()
    s.run_safety()
    wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
    return s


def _halted(s: TradingSystemStack) -> bool:
    st = s.engine_state()
    return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]


def _build_position_and_working_order(s: TradingSystemStack) -> None:
    last = {row["symbol"]: row for row in httpx.get(s.engine.url + "/symbols/list", timeout=5).json()}
    price = last["MSFT"]["last_price"]
    assert s.place_order("AAPL", "buy", 10).status_code == 201
    # A resting buy limit well under the market: a working order the kill switch must cancel.
    resp = s.place_order("MSFT", "buy", 1, type="limit", limit_price=round(float(price) * 0.97, 2))
    assert resp.status_code == 201, resp.text
    wait_for(lambda: s.engine_state()["orders"]["working"] >= 1, what="a working order")


def test_patch_halts_cancels_flattens_and_is_acknowledged(stack):
    _build_position_and_working_order(stack)
    stack.patch(
        {
            "spec": {
                "killSwitch": {"engaged": True, "closePositions": True, "reason": "e2e", "operator": "alice"}
            }
        }
    )
    wait_for(lambda: _halted(stack), timeout=15, what="engine halted")
    refused = stack.place_order("AAPL", "buy", 1)
    assert 400 <= refused.status_code < 500
    assert "kill" in refused.text.lower() or "halt" in refused.text.lower()
    wait_for(lambda: stack.engine_state()["orders"]["working"] == 0, what="working orders cancelled")
    assert stack.flat_positions() is not None
    ks = wait_for(stack.acknowledged, timeout=15, what="status acknowledgement")
    ack = ks["acknowledgements"][0]
    assert ack["replica"].endswith("-engine-0")
    assert ack["latencyMs"] >= 0
    assert ks["by"] == "alice"
    conditions = {c["type"]: c for c in stack.get()["status"]["conditions"]}
    assert conditions["KillSwitchEngaged"]["status"] == "True"


def test_runbook_activate_curl_halts_engine_and_records_in_the_resource(stack):
    resp = httpx.post(
        stack.safety.url + "/kill-switch/activate",
        headers={**stack.safety_headers(), "Content-Type": "application/json"},
        content='{"reason": "Emergency stop - runaway trading", "close_positions": true, "operator": "YOUR_NAME"}',
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    wait_for(lambda: _halted(stack), timeout=10, what="engine halted")
    ks = stack.get()["spec"]["killSwitch"]
    assert ks["engaged"] is True
    assert ks["operator"] == "YOUR_NAME"
    assert ks["source"] == "safety-api"
    wait_for(stack.acknowledged, timeout=15, what="status acknowledgement")
    public = httpx.get(stack.safety.url + "/status", timeout=5).json()
    assert public["kill_switch_engaged"] is True
    assert "reason" not in str(public).lower() or "Emergency" not in str(public)


def test_operator_down_kill_still_reaches_engine(stack, operator_process, cluster):
    operator_process.stop()
    try:
        stack.patch(
            {"spec": {"killSwitch": {"engaged": True, "reason": "operator is down", "operator": "bob"}}}
        )
        # Only the engine's own watch of its TradingSystem can carry this.
        wait_for(lambda: _halted(stack), timeout=15, what="engine halted without the operator")
    finally:
        restarted = start_operator(cluster.kubeconfig)
        operator_process.proc, operator_process.log, operator_process.port = (
            restarted.proc,
            restarted.log,
            restarted.port,
        )
    wait_for(stack.acknowledged, timeout=20, what="acknowledgement once the operator is back")


def test_apiserver_down_safety_halts_engine_directly(stack, cluster):
    if cluster.plane is None:
        pytest.skip("needs our own control plane to stop the API server")
    cluster.plane.stop_apiserver()
    try:
        resp = httpx.post(
            stack.safety.url + "/kill-switch/activate",
            headers=stack.safety_headers(),
            json={"reason": "apiserver down", "close_positions": False, "operator": "carol"},
            timeout=20,
        )
        assert resp.status_code in (200, 202), resp.text
        assert "unreachable" in resp.text.lower()
        st = stack.engine_state()
        assert st["trading_state"] == "HALTED"
        assert st["kill_switch"]["engaged"] is True
        assert "apiserver down" in (st["kill_switch"]["reason"] or "")
    finally:
        cluster.plane.start_apiserver()
    # Once the API server is back, the halt ends up in the source of truth (or stays halted).
    wait_for(lambda: stack.engine_state()["trading_state"] == "HALTED", what="still halted")


def test_engine_restarted_while_engaged_comes_back_halted(stack):
    stack.patch({"spec": {"killSwitch": {"engaged": True, "reason": "restart test", "operator": "dave"}}})
    wait_for(lambda: _halted(stack), what="engine halted")
    assert stack.engine.stop() == 0
    port = int(stack.engine.url.rsplit(":", 1)[1])
    stack.run_engine(port=port)
    seen = []
    for _ in range(30):
        state = stack.engine_state()
        seen.append(state["trading_state"])
    assert set(seen) == {"HALTED"}, seen
    wait_for(lambda: _halted(stack), what="halted with the switch read back")


def test_gitops_revert_does_not_resume_trading(stack, cluster):
    stack.patch({"spec": {"killSwitch": {"engaged": True, "reason": "gitops test", "operator": "erin"}}})
    wait_for(lambda: _halted(stack), what="engine halted")
    manifest = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": stack.name, "namespace": stack.namespace},
        "spec": {**SPEC, "killSwitch": {"engaged": False}},
    }
    res = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        input=yaml.safe_dump(manifest),
        check=False,
    )
    assert res.returncode != 0
    assert "release record" in res.stderr
    assert stack.get()["spec"]["killSwitch"]["engaged"] is True
    assert _halted(stack)


def test_deactivate_resumes_trading(stack):
    stack.patch({"spec": {"killSwitch": {"engaged": True, "reason": "to release", "operator": "frank"}}})
    wait_for(lambda: _halted(stack), what="engine halted")
    resp = httpx.post(
        stack.safety.url + "/kill-switch/deactivate",
        headers=stack.safety_headers(),
        json={"operator": "Your Name"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    ks = stack.get()["spec"]["killSwitch"]
    assert ks["engaged"] is False
    assert ks["release"]["operator"] == "Your Name"
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=15, what="trading resumed")
    assert stack.place_order("AAPL", "buy", 1).status_code == 201


def test_bad_tokens_and_bodies_change_nothing(stack):
    url = stack.safety.url
    wrong = {"Authorization": "Bearer not-the-token"}
    body = {"reason": "x", "close_positions": False, "operator": "mallory"}
    assert httpx.post(url + "/kill-switch/activate", json=body, timeout=5).status_code == 401
    assert httpx.post(url + "/kill-switch/activate", json=body, headers=wrong, timeout=5).status_code == 401
    for bad in (
        '{"reason": "x"',
        # (a sloppy engage -- no reason, a number, an unknown field -- is carried out, never refused)
        '{"reason": "x", "operator": "m", "close_positions": "yes"}',
        "[]",
    ):
        r = httpx.post(
            url + "/kill-switch/activate",
            content=bad,
            headers={**stack.safety_headers(), "Content-Type": "application/json"},
            timeout=5,
        )
        assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
    r = httpx.post(stack.engine.url + "/admin/kill-switch", json={"engaged": True}, headers=wrong, timeout=5)
    assert r.status_code == 401
    assert "not-the-token" not in r.text
    assert stack.get()["spec"]["killSwitch"]["engaged"] is False
    assert stack.engine_state()["trading_state"] == "ACTIVE"


def test_concurrent_activations_are_idempotent(stack):
    def activate(i: int) -> int:
        return httpx.post(
            stack.safety.url + "/kill-switch/activate",
            headers=stack.safety_headers(),
            json={"reason": f"concurrent {i}", "close_positions": False, "operator": f"op{i}"},
            timeout=20,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(activate, range(8)))
    assert all(c == 200 for c in codes), codes
    ks = stack.get()["spec"]["killSwitch"]
    assert ks["engaged"] is True
    assert ks["reason"].startswith("concurrent ")
    wait_for(lambda: _halted(stack), what="engine halted")
    # A second engage through kubectl with the shared helper keeps it engaged, too.
    stack.patch(engage_patch(reason="again", operator="x", source="kubectl"))
    assert _halted(stack)
