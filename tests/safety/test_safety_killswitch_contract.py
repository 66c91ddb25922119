"""The safety service's side of the sharpened kill-switch contract (issue #15), against the stand-in
TradingSystem (CEL rules emulated; test_safety_cluster.py and tests/crd run the real API server) and the
stand-in engine (it records every command; it does not model the engine's own latch).

- finding 5: an activate never sends the engine (or the resource) something weaker than what is engaged;
- finding 4: the direct halt (API server down) carries an engagement id, persisted, and the pending
  patch writes that same engagedAt into spec;
- finding 8: the audit is durable (JSONL on the pod's volume, read back after a restart) and complete
  (the engine's ack: what was cancelled and closed); `/status` without a token is served from the
  watchdog's snapshot and not audited, so a flood is no load on the engine or the API server.
"""

from __future__ import annotations

import json

from quantzoo_api.killswitch import KillSwitchMode
from quantzoo_safety.audit import AuditLog
from safety_support import ACTIVATE, AUTH, audit_entries

ENGAGED_AT = "2026-12-05T18:00:00.000Z"


def _engage_in_spec(fake_kube, **fields) -> None:
    fake_kube.obj["spec"]["killSwitch"] = {
        "engaged": True,
        "mode": "Halt",
        "closePositions": False,
        "reason": "first incident",
        "operator": "alice",
        "engagedAt": ENGAGED_AT,
        **fields,
    }


# -- finding 5 ---------------------------------------------------------------------------------------------
def test_a_weaker_activate_does_not_weaken_an_engaged_halt(client, engine, fake_kube):
    _engage_in_spec(fake_kube)
    body = {**ACTIVATE, "mode": "ReduceOnly", "close_positions": False}
    r = client.post("/kill-switch/activate", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "already engaged"
    (command,) = engine.engine.commands
    assert command.mode is KillSwitchMode.HALT  # the stronger of current (Halt) and asked (ReduceOnly)
    assert command.engagement == ENGAGED_AT  # the same engagement, not a new one
    assert fake_kube.patches == []  # nothing stronger to record
    assert fake_kube.obj["spec"]["killSwitch"]["mode"] == "Halt"


def test_a_stronger_activate_while_engaged_is_carried_out(client, engine, fake_kube):
    _engage_in_spec(fake_kube, mode="ReduceOnly")
    r = client.post("/kill-switch/activate", json={**ACTIVATE, "mode": "Halt"}, headers=AUTH)
    assert r.status_code == 200, r.text
    (command,) = engine.engine.commands
    assert (command.mode, command.close_positions) == (KillSwitchMode.HALT, True)
    ks = fake_kube.obj["spec"]["killSwitch"]
    assert (ks["mode"], ks["closePositions"], ks["engagedAt"]) == ("Halt", True, ENGAGED_AT)


def test_a_new_engagement_pushes_the_engagedAt_it_writes(client, engine, fake_kube):
    r = client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    assert r.status_code == 200, r.text
    (command,) = engine.engine.commands
    assert command.engagement
    assert command.engagement == fake_kube.obj["spec"]["killSwitch"]["engagedAt"]


# -- finding 4 ---------------------------------------------------------------------------------------------
def test_the_direct_halt_carries_an_engagement_that_the_pending_patch_writes(
    make_client, engine, fake_kube, tmp_path
):
    pending = tmp_path / "pending.json"
    fake_kube.unreachable = True
    with make_client(fake_kube, pending_file=str(pending)) as c:
        body = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()
        assert (body["kubernetes"], body["engine"]) == ("unreachable", "halted")
    engagement = engine.engine.commands[-1].engagement
    assert engagement
    assert json.loads(pending.read_text())["engagement"] == engagement  # persisted

    with make_client(fake_kube, pending_file=str(pending)) as c:  # a restart during the outage
        assert engine.engine.commands[-1].engagement == engagement  # re-asserted: the same engagement
        fake_kube.unreachable = False
        assert c.portal.call(c.ctx.killswitch.sync_pending).result == "patched"
    assert fake_kube.obj["spec"]["killSwitch"]["engagedAt"] == engagement
    assert not pending.exists()


def test_the_pending_patch_adopts_the_direct_engagement_over_an_older_one(make_client, engine, fake_kube):
    """A release of the older engagement in flight while the safety service halted directly: the spec is
    still engaged with the OLD engagedAt when the API server comes back. The pending patch makes spec name
    the engagement the engine holds, so only a release of THAT engagement resumes trading."""
    _engage_in_spec(fake_kube)
    fake_kube.unreachable = True
    with make_client(fake_kube) as c:
        c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
        direct = engine.engine.commands[-1].engagement
        assert direct not in (None, ENGAGED_AT)
        fake_kube.unreachable = False
        c.portal.call(c.ctx.killswitch.sync_pending)
    assert fake_kube.obj["spec"]["killSwitch"]["engagedAt"] == direct


# -- finding 8 ---------------------------------------------------------------------------------------------
def test_the_audit_survives_a_restart_and_holds_the_engine_ack(make_client, engine, fake_kube, audit_path):
    with make_client(fake_kube) as c:
        assert c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).status_code == 200
    (entry,) = [e for e in audit_entries(audit_path) if e["action"] == "kill-switch.activate"]
    assert entry["engine_ack"]["cancelled_orders"] == ["o-1", "o-2"]
    assert entry["engine_ack"]["closed_positions"] == ["AAPL"]
    assert entry["engagement"] == fake_kube.obj["spec"]["killSwitch"]["engagedAt"]
    # A new process reads its history back from the file on the pod's volume.
    reopened = AuditLog(str(audit_path), tradingsystem="trading/demo")
    assert [e["action"] for e in reopened.recent(5)][-1] == "kill-switch.activate"


def test_a_public_status_flood_is_no_load_on_the_engine_and_is_not_audited(
    make_client, engine, fake_kube, audit_path
):
    with make_client(fake_kube) as c:
        c.portal.call(c.ctx.observer.both)  # the watchdog's loop refreshes the snapshot
        before = engine.engine.state_calls
        for _ in range(50):
            r = c.get("/status")
            assert r.status_code == 200
            assert "kill_switch_engaged" in r.json()
        assert engine.engine.state_calls == before
    assert [e for e in audit_entries(audit_path) if e.get("path") == "/status"] == []
