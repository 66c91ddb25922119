"""GET /kill-switch/levels (issue #13): which levels hold this system, from the engine and from status."""

from __future__ import annotations

from safety_support import AUTH

HOLDS = [
    {"level": "Firm", "name": "Firm/firm", "engagedAt": "2026-12-05T21:00:00.000Z", "by": "cro"},
    {"level": "System", "name": "System/t/demo", "engagedAt": "2026-12-05T21:00:01.000Z"},
]


def test_levels_show_what_holds_the_system(client, fake_kube) -> None:
    fake_kube.obj["status"] = {"killSwitch": {"heldBy": HOLDS}}
    body = client.get("/kill-switch/levels", headers=AUTH).json()
    assert body["status"] == HOLDS
    assert body["halted_by"] == "Firm"


def test_levels_need_the_token(client) -> None:
    assert client.get("/kill-switch/levels").status_code == 401


def test_an_engine_held_by_the_firm_is_consistent_with_a_released_spec(client, engine, fake_kube) -> None:
    """The consistency check compares spec with the engine's OWN switch: a firm halt holding the engine
    while the system's switch is released is no inconsistency."""
    engine.engine.kill_switch = {"engaged": True, "system_engaged": False, "held_by": HOLDS[:1]}
    engine.engine.trading_state = "HALTED"
    report = client.get("/test/safety-check", headers=AUTH).json()
    check = next(c for c in report["checks"] if c["name"] == "kill_switch_consistent")
    assert check["ok"] is True, check
    levels = client.get("/kill-switch/levels", headers=AUTH).json()
    assert levels["engine"] == HOLDS[:1]
