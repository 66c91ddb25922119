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
