"""The runbook's kill-switch endpoints against a stand-in TradingSystem and a stand-in engine."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from kubernetes import client as k8s
from quantzoo_safety.app import build_context
from quantzoo_safety.engagement import EngageIntent
from quantzoo_safety.killswitch import RELEASE_UNREACHABLE
from quantzoo_safety.kube import TradingSystemClient
from safety_support import ACTIVATE, AUTH, closed_port


def _ks(fake_kube):
    return fake_kube.obj["spec"]["killSwitch"]


# ------------------------------------------------------------------------------------------ activate
def test_activate_patches_the_tradingsystem_and_halts_the_engine(client, engine, fake_kube):
    r = client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "engaged"
    assert body["kubernetes"] == "patched"
    assert body["engine"] == "halted"
    assert body["engine_ack"]["cancelled_orders"] == ["o-1", "o-2"]
    assert body["engine_ack"]["closed_positions"] == ["AAPL"]
    assert body["kill_switch"]["operator"] == "alice"
    ks = _ks(fake_kube)
    assert ks["engaged"] is True
    assert ks["closePositions"] is True
    assert ks["reason"] == ACTIVATE["reason"]
    assert ks["operator"] == "alice"
    assert ks["source"] == "safety-api"
    assert ks["mode"] == "Halt"
    assert ks["engagedAt"].endswith("Z")
    (cmd,) = engine.engine.commands
    assert cmd.engaged
    assert cmd.close_positions
    assert cmd.operator == "alice"
    assert cmd.source == "safety-api"
    assert client.ctx.metrics.activations.labels(source="api")._value.get() == 1
    assert client.ctx.metrics.direct_halts._value.get() == 1


def test_activate_reduce_only_mode(client, engine, fake_kube):
    r = client.post("/kill-switch/activate", json={**ACTIVATE, "mode": "ReduceOnly"}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["engine"] == "reduce-only"
    assert _ks(fake_kube)["mode"] == "ReduceOnly"


def test_activate_again_is_idempotent_and_keeps_who_and_why(client, engine, fake_kube):
    first = {"reason": "drawdown looks wrong", "close_positions": False, "operator": "alice"}
    assert client.post("/kill-switch/activate", json=first, headers=AUTH).json()["status"] == "engaged"
    patches = len(fake_kube.patches)
    second = {**first, "operator": "bob", "reason": "me too"}
    r = client.post("/kill-switch/activate", json=second, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["status"] == "already engaged"
    assert r.json()["kubernetes"] == "already engaged"
    assert r.json()["kill_switch"]["operator"] == "alice"
    assert _ks(fake_kube)["operator"] == "alice"
    assert _ks(fake_kube)["reason"] == "drawdown looks wrong"
    assert len(fake_kube.patches) == patches  # nothing written
    assert client.ctx.metrics.activations.labels(source="api")._value.get() == 1


def test_activate_again_escalates_close_positions_only(client, fake_kube):
    client.post(
        "/kill-switch/activate", json={"reason": "r", "operator": "alice", "mode": "ReduceOnly"}, headers=AUTH
    )
    r = client.post("/kill-switch/activate", json={**ACTIVATE, "operator": "bob"}, headers=AUTH)
    assert r.json()["status"] == "already engaged"
    assert sorted(r.json()["escalated"]) == ["closePositions", "mode"]
    ks = _ks(fake_kube)
    assert ks["closePositions"] is True
    assert ks["mode"] == "Halt"
    assert ks["operator"] == "alice"
    assert ks["reason"] == "r"


def test_concurrent_activations_all_succeed_with_one_engagement(client, fake_kube):
    fake_kube.delay = 0.01  # widen the read-then-patch window

    def activate(i):
        return client.post("/kill-switch/activate", json={**ACTIVATE, "operator": f"op{i}"}, headers=AUTH)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(activate, range(8)))
    assert all(a.status_code == 200 for a in answers)
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["already engaged"] * 7 + ["engaged"]
    winner = next(a.json() for a in answers if a.json()["status"] == "engaged")
    assert all(a.json()["kill_switch"]["operator"] == winner["kill_switch"]["operator"] for a in answers)
    assert _ks(fake_kube)["operator"] == winner["kill_switch"]["operator"]
    assert len(fake_kube.patches) == 1


def test_concurrent_activations_from_two_safety_processes_keep_the_first(make_settings, fake_kube):
    """Two services (two replicas, or a restart overlap) racing on one object: resourceVersion decides."""
    fake_kube.delay = 0.02
    settings = make_settings()

    async def race():
        async with httpx.AsyncClient() as http:
            a = build_context(settings, http=http, kube=fake_kube).killswitch
            b = build_context(settings, http=http, kube=fake_kube).killswitch
            return await asyncio.gather(
                a.activate(EngageIntent("first", "alice", "safety-api")),
                b.activate(EngageIntent("second", "bob", "safety-api")),
            )

    answers = asyncio.run(race())
    assert sorted(x["status"] for x in answers) == ["already engaged", "engaged"]
    assert fake_kube.conflicts >= 1
    assert len(fake_kube.patches) == 1
    assert {x["kill_switch"]["operator"] for x in answers} == {_ks(fake_kube)["operator"]}


def test_api_server_unreachable_still_halts_the_engine(client, engine, fake_kube):
    fake_kube.unreachable = True
    r = client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["kubernetes"] == "unreachable"
    assert body["engine"] == "halted"
    assert "NOT recorded in the TradingSystem" in body["message"]
    assert engine.engine.trading_state == "HALTED"
    assert client.ctx.killswitch.pending is not None
    again = client.post("/kill-switch/activate", json={**ACTIVATE, "operator": "bob"}, headers=AUTH).json()
    assert again["status"] == "already engaged"
    assert again["kill_switch"]["operator"] == "alice"
    assert again["kubernetes"] == "unreachable"
    status = client.get("/status", headers=AUTH).json()
    assert status["kill_switch_engaged"] is True
    assert status["pending_tradingsystem_patch"]["operator"] == "alice"
    # The API server comes back: the engagement is recorded in the source of truth.
    fake_kube.unreachable = False
    result = client.portal.call(client.ctx.killswitch.sync_pending)
    assert result.result == "patched"
    assert _ks(fake_kube)["engaged"] is True
    assert _ks(fake_kube)["operator"] == "alice"
    assert client.ctx.killswitch.pending is None
    assert client.ctx.audit.recent(1)[0]["action"] == "kill-switch.record-pending"


def test_api_server_on_a_closed_port_still_halts_the_engine(make_client, engine):
    """The real kubernetes client pointed at a loopback port where nothing listens."""
    api = k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{closed_port()}"))
    kube = TradingSystemClient(api, "trading", "demo", timeout=1.0)
    with make_client(kube) as c:
        started = time.monotonic()
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert r.json()["kubernetes"] == "unreachable"
        assert r.json()["engine"] == "halted"
        assert elapsed < 2.5
        assert engine.engine.trading_state == "HALTED"
        assert c.ctx.metrics.apiserver_up._value.get() == 0
        entry = c.ctx.audit.recent(1)[0]
        assert entry["kubernetes"] == "unreachable"
        assert entry["engine"] == "halted"
        # Deactivation must go through the source of truth: refused while it is unreachable.
        d = c.post("/kill-switch/deactivate", json={"operator": "alice"}, headers=AUTH)
        assert d.status_code == 503
        assert d.json() == {"detail": RELEASE_UNREACHABLE}
        assert engine.engine.trading_state == "HALTED"
    kube.close()


def test_neither_path_works_is_503_and_changes_nothing(make_client, fake_kube):
    fake_kube.unreachable = True
    with make_client(fake_kube, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 503
        assert r.json()["detail"].startswith("kill switch NOT engaged")
        assert c.ctx.killswitch.pending is None
        assert c.ctx.audit.recent(1)[0]["result"] == "failed"


def test_engine_down_but_tradingsystem_patched_is_200(make_client, fake_kube):
    with make_client(fake_kube, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 200
        assert r.json()["kubernetes"] == "patched"
        assert r.json()["engine"] == "unreachable"
        assert _ks(fake_kube)["engaged"] is True


def test_forbidden_patch_but_engine_halted(client, engine, fake_kube):
    fake_kube.forbidden = True
    r = client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["kubernetes"] == "refused"
    assert "forbidden" in r.json()["kubernetes_detail"]
    assert client.ctx.killswitch.pending is None  # a refusal is not retried behind anyone's back


def test_wrong_engine_admin_token_is_reported(make_client, fake_kube):
    with make_client(fake_kube, engine_admin_token="not-the-engine-token") as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 200
        assert r.json()["engine"] == "refused"
        assert "not-the-engine-token" not in r.text


# ------------------------------------------------------------------------------------------ bad input
BAD_BODIES = [
    (b"{not json", "application/json", "body is not valid JSON"),
    (b"", "application/json", None),
    (b'{"reason": "x", "operator": "al", "close_positions": [1]}', "application/json", "close_positions"),
    (b'["reason"]', "application/json", None),
    (b"reason=x&operator=al", "application/x-www-form-urlencoded", None),
    # Found by the fuzzer (tests/fuzz): lax parsing read these as a close_positions decision.
    (b'{"reason": "x", "operator": "al", "close_positions": "0"}', "application/json", "close_positions"),
    (b'{"reason": "x", "operator": "al", "close_positions": 1}', "application/json", "close_positions"),
    (b'{"reason": "x", "operator": "al", "close_positions": "yes"}', "application/json", "close_positions"),
]


@pytest.mark.parametrize(("body", "ctype", "mentions"), BAD_BODIES)
def test_bad_activate_bodies_are_4xx_and_change_nothing(client, engine, fake_kube, body, ctype, mentions):
    r = client.post("/kill-switch/activate", content=body, headers={**AUTH, "Content-Type": ctype})
    assert 400 <= r.status_code < 500
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert detail.startswith("invalid request")
    if mentions:
        assert mentions in detail
    assert fake_kube.patches == []
    assert engine.engine.commands == []
    assert client.ctx.audit.recent(1)[0]["result"] == "refused"


@pytest.mark.parametrize(
    "body",
    [b'{"operator": ""}', b'{"operator": 7}', b'{"operator": "al", "close_positions": true}', b"{", b"{}"],
)
def test_bad_deactivate_bodies_are_4xx_and_change_nothing(client, fake_kube, body):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    before = len(fake_kube.patches)
    headers = {**AUTH, "Content-Type": "application/json"}
    r = client.post("/kill-switch/deactivate", content=body, headers=headers)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str)
    assert len(fake_kube.patches) == before
    assert _ks(fake_kube)["engaged"] is True


# ----------------------------------------------------------------------------------------- deactivate
def test_deactivate_writes_the_release_record(client, engine, fake_kube):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    commands = len(engine.engine.commands)
    r = client.post("/kill-switch/deactivate", json={"operator": "Your Name"}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "released"
    assert body["release"]["operator"] == "Your Name"
    assert body["release"]["reason"] == "released via safety API"
    ks = _ks(fake_kube)
    assert ks["engaged"] is False
    assert ks["release"]["operator"] == "Your Name"
    # The release goes through the source of truth only: nothing pushed to the engine directly.
    assert len(engine.engine.commands) == commands
    assert client.ctx.metrics.deactivations._value.get() == 1


def test_deactivate_with_a_reason(client, fake_kube):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    body = {"operator": "al", "reason": "root cause fixed"}
    r = client.post("/kill-switch/deactivate", json=body, headers=AUTH)
    assert r.status_code == 200
    assert _ks(fake_kube)["release"]["reason"] == "root cause fixed"


def test_deactivate_when_not_engaged_is_409(client, fake_kube):
    r = client.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
    assert r.status_code == 409
    assert r.json() == {"detail": "kill switch is not engaged; nothing to release"}
    assert fake_kube.patches == []


def test_deactivate_when_api_server_unreachable_is_503(client, fake_kube):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    fake_kube.unreachable = True
    r = client.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
    assert r.status_code == 503
    assert r.json() == {"detail": RELEASE_UNREACHABLE}


def test_deactivate_refused_by_the_api_server_is_409_with_its_message(client, fake_kube, monkeypatch):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    # Simulate an old release record being re-sent (the CEL rule demands a new one).
    monkeypatch.setattr(
        "quantzoo_safety.engagement.release_patch_for",
        lambda current, **kw: {"spec": {"killSwitch": {"engaged": False}}},
    )
    r = client.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
    assert r.status_code == 409
    assert "released only with a release record naming the engagement" in r.json()["detail"]
    assert _ks(fake_kube)["engaged"] is True


def test_deactivate_after_a_pending_direct_halt_records_then_releases(client, fake_kube):
    fake_kube.unreachable = True
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    fake_kube.unreachable = False
    r = client.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
    assert r.status_code == 200
    assert [p["spec"]["killSwitch"]["engaged"] for p in fake_kube.patches] == [True, False]


def test_tradingsystem_missing(make_client, fake_kube):
    fake_kube.obj = None
    with make_client(fake_kube) as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 200
        assert r.json()["kubernetes"] == "not found"
        d = c.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
        assert d.status_code == 503
        check = c.get("/test/safety-check", headers=AUTH).json()
        api = next(x for x in check["checks"] if x["name"] == "apiserver_reachable")
        assert api["ok"] is False
        assert "not found" in api["detail"]


# ----------------------------------------------------------------------------------------- standalone
def test_standalone_activate_and_deactivate(standalone, engine):
    r = standalone.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["kubernetes"] == "disabled"
    assert r.json()["engine"] == "halted"
    again = standalone.post("/kill-switch/activate", json={**ACTIVATE, "operator": "bob"}, headers=AUTH)
    assert again.json()["status"] == "already engaged"
    assert engine.engine.commands[-1].operator == "alice"  # the original who is re-pushed
    d = standalone.post("/kill-switch/deactivate", json={"operator": "alice"}, headers=AUTH)
    assert d.status_code == 200
    assert d.json()["engine"] == "released"
    assert d.json()["release"]["operator"] == "alice"
    assert engine.engine.trading_state == "ACTIVE"
    assert standalone.post("/kill-switch/deactivate", json={"operator": "a"}, headers=AUTH).status_code == 409


def test_standalone_engine_down_is_503(make_client):
    with make_client(None, engine_url=f"http://127.0.0.1:{closed_port()}") as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        assert r.status_code == 503
        assert "kill switch NOT engaged" in r.json()["detail"]
        assert c.ctx.killswitch.local["engaged"] is False
        assert c.post("/kill-switch/deactivate", json={"operator": "a"}, headers=AUTH).status_code == 503


def test_standalone_release_of_an_engine_engaged_before_a_restart(standalone, engine):
    engine.engine.kill_switch = {"engaged": True, "reason": "before restart"}
    engine.engine.trading_state = "HALTED"
    r = standalone.post("/kill-switch/deactivate", json={"operator": "al"}, headers=AUTH)
    assert r.status_code == 200
    assert engine.engine.trading_state == "ACTIVE"


# ------------------------------------------------------------------------------- the OpenAPI document
def test_undecodable_body_is_a_documented_400_and_changes_nothing(client, engine, fake_kube):
    headers = {**AUTH, "Content-Type": "application/json"}
    r = client.post("/kill-switch/activate", content=b'{"reason": "\xff"}', headers=headers)
    assert r.status_code == 400
    assert isinstance(r.json()["detail"], str)
    assert fake_kube.patches == []
    assert engine.engine.commands == []
    assert client.ctx.audit.recent(1)[0]["result"] == "refused"


def test_openapi_documents_auth_and_every_refusal(standalone):
    """What tests/fuzz checks every answer against: found undocumented there, declared here."""
    doc = standalone.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    paths = doc["paths"]
    expected = {
        ("post", "/kill-switch/activate"): {"200", "400", "401", "422", "503"},
        ("post", "/kill-switch/deactivate"): {"200", "400", "401", "409", "422", "503"},
        ("get", "/status"): {"200", "401", "503"},
        ("get", "/test/safety-check"): {"200", "401", "503"},
    }
    for (method, path), codes in expected.items():
        op = paths[path][method]
        assert set(op["responses"]) == codes, path
        assert {"HTTPBearer": []} in op["security"]
    assert paths["/kill-switch/activate"]["post"]["responses"]["422"]["content"]["application/json"]
    # Without a token /status still answers (the public view): the token is optional there.
    assert {} in paths["/status"]["get"]["security"]
    assert {} not in paths["/test/safety-check"]["get"]["security"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
