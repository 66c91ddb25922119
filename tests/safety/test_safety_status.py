"""`/status`, `/test/safety-check`, `/healthz`, and the rule that every error is JSON 4xx/503."""

from __future__ import annotations

from safety_support import ACTIVATE, AUTH, ENGINE_TOKEN, TOKEN, closed_port


def checks(client) -> dict[str, dict]:
    report = client.get("/test/safety-check", headers=AUTH).json()
    return {c["name"]: c for c in report["checks"]} | {"passed": report["passed"]}


def test_public_status_shape(client, engine):
    """The public view is the watchdog's snapshot: each `observer.both()` here stands for one of its ticks."""
    r = client.get("/status")
    assert r.json() == {"service": "degraded", "kill_switch_engaged": False, "trading_state": None}
    client.portal.call(client.ctx.observer.both)
    r = client.get("/status")
    assert r.json() == {"service": "ok", "kill_switch_engaged": False, "trading_state": "ACTIVE"}
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert client.get("/status").json()["kill_switch_engaged"] is True  # our own change, at once
    client.portal.call(client.ctx.observer.both)
    assert client.get("/status").json() == {
        "service": "ok",
        "kill_switch_engaged": True,
        "trading_state": "HALTED",
    }


def test_public_status_hides_who_and_why(client):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    text = client.get("/status").text
    assert "alice" not in text
    assert "runaway" not in text


def test_full_status_shape(client, fake_kube):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    fake_kube.obj["status"] = {
        "phase": "Halted",
        "killSwitch": {
            "engaged": True,
            "since": "2026-01-01T00:00:00Z",
            "acknowledgements": [{"replica": "demo-engine-0", "engaged": True, "latencyMs": 7}],
            "propagationLatencyMs": 7,
        },
    }
    full = client.get("/status", headers=AUTH).json()
    assert set(full) == {
        "service",
        "kill_switch_engaged",
        "trading_state",
        "tradingsystem",
        "mode",
        "kill_switch",
        "pending_tradingsystem_patch",
        "tradingsystem_status",
        "engine",
        "apiserver",
        "watchdog",
        "audit",
    }
    assert full["mode"] == "kubernetes"
    assert full["tradingsystem"] == "trading/demo"
    ks = full["kill_switch"]
    assert ks["engaged"] is True
    assert ks["reason"] == ACTIVATE["reason"]
    assert ks["operator"] == "alice"
    assert ks["source"] == "safety-api"
    assert ks["since"] == "2026-01-01T00:00:00Z"
    assert full["tradingsystem_status"]["acknowledgements"] == [
        {"replica": "demo-engine-0", "engaged": True, "latencyMs": 7}
    ]
    assert full["engine"]["reachable"] is True
    assert full["engine"]["trading_state"] == "HALTED"
    assert full["engine"]["heartbeat_at"]
    assert full["apiserver"] == {"enabled": True, "reachable": True, "error": None}
    assert full["watchdog"]["auto_trip"]["max_daily_drawdown_pct"] == 5.0
    assert no_tokens(full)


def no_tokens(obj) -> bool:
    text = str(obj)
    return TOKEN not in text and ENGINE_TOKEN not in text


def test_status_when_everything_is_down(make_client, fake_kube):
    fake_kube.unreachable = True
    with make_client(fake_kube, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        assert c.get("/status").json() == {
            "service": "degraded",
            "kill_switch_engaged": False,
            "trading_state": None,
        }
        full = c.get("/status", headers=AUTH).json()
        assert full["apiserver"]["reachable"] is False
        assert full["engine"]["reachable"] is False
        assert "engine unreachable" in full["engine"]["error"]


def test_safety_check_reports_each_check(client, engine, fake_kube):
    c = checks(client)
    assert c["token_valid"]["ok"] is True
    assert c["engine_reachable"]["ok"] is True
    assert c["apiserver_reachable"]["ok"] is True
    assert c["kill_switch_consistent"]["ok"] is True
    assert c["kill_switch_consistent"]["detail"] == "spec=released, status=unknown, engine=released"
    assert c["watchdog_running"]["ok"] is False  # the test client does not start it
    assert c["passed"] is False


def test_safety_check_passes_with_the_watchdog(make_client, fake_kube, engine):
    with make_client(fake_kube, start_watchdog=True) as client:
        c = checks(client)
        assert c["passed"] is True, c


def test_safety_check_finds_an_inconsistency(client, engine, fake_kube):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    fake_kube.obj["status"] = {"killSwitch": {"engaged": False}}  # the operator has not caught up
    c = checks(client)
    assert c["kill_switch_consistent"]["ok"] is False
    assert c["kill_switch_consistent"]["detail"] == "spec=engaged, status=released, engine=engaged"


def test_safety_check_with_engine_and_api_server_down(make_client, fake_kube):
    fake_kube.unreachable = True
    with make_client(fake_kube, engine_url=f"http://127.0.0.1:{closed_port()}") as client:
        c = checks(client)
        assert c["passed"] is False
        assert c["engine_reachable"]["ok"] is False
        assert c["apiserver_reachable"]["ok"] is False
        assert "unreachable" in c["apiserver_reachable"]["detail"]
        assert c["kill_switch_consistent"]["ok"] is False
        assert c["kill_switch_consistent"]["detail"].startswith("cannot verify")


def test_safety_check_reports_a_pending_direct_halt(client, fake_kube):
    fake_kube.unreachable = True
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    fake_kube.unreachable = False
    c = checks(client)
    assert c["kill_switch_consistent"]["ok"] is False
    assert "not yet recorded in the TradingSystem" in c["kill_switch_consistent"]["detail"]


def test_safety_check_standalone(standalone):
    c = checks(standalone)
    assert c["apiserver_reachable"]["ok"] is True
    assert "standalone" in c["apiserver_reachable"]["detail"]
    assert c["kill_switch_consistent"]["detail"] == "safety=released, engine=released"


def test_healthz_needs_nothing(make_client, fake_kube):
    fake_kube.unreachable = True
    with make_client(fake_kube, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_unexpected_errors_are_json_503_without_traceback(client, monkeypatch):
    async def boom():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(client.ctx.observer, "both", boom)
    r = client.get("/status", headers=AUTH)
    assert r.status_code == 503
    assert r.json() == {"detail": "internal error in the safety service; see its log"}
    assert "secret internals" not in r.text
    assert client.ctx.audit.recent(1)[0]["result"] == "failed"


def test_unknown_paths_and_methods_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}
    r = client.get("/kill-switch/activate", headers=AUTH)
    assert r.status_code == 405
    assert r.json() == {"detail": "Method Not Allowed"}
