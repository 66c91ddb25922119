"""Both tokens the safety service holds rotate without a restart: its own API token and the engine admin
token it uses for direct halts, each read from a file laid out as the kubelet mounts a Secret."""

from __future__ import annotations

import time
from pathlib import Path

from safety_support import ACTIVATE, ENGINE_TOKEN, TOKEN, audit_entries

from hack.devcluster.podrunner import write_atomically

NEW_ENGINE_TOKEN = "engine-admin-token-after-rotation"
NEW_TOKEN = "safety-api-token-after-rotation"


def mount(root: Path, token: str) -> Path:
    write_atomically(root, {"token": token.encode()}, 0o440)
    return root / "token"


def test_engine_admin_token_rotation_reaches_direct_halts(make_client, engine, tmp_path):
    token_file = mount(tmp_path / "engine-admin", ENGINE_TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with make_client(None, engine_admin_token="", engine_admin_token_file=str(token_file)) as c:
            assert c.post("/kill-switch/activate", json=ACTIVATE, headers=auth).json()["engine"] == "halted"
            assert c.post("/kill-switch/deactivate", json={"operator": "al"}, headers=auth).status_code == 200

            # The engine has the new Secret, we do not yet. (The real engine accepts the previous token in
            # its overlap window; this stand-in knows one token, so this is the engine's worst case.)
            engine.engine.admin_token = NEW_ENGINE_TOKEN
            refused = c.post("/kill-switch/activate", json=ACTIVATE, headers=auth)
            assert refused.status_code == 503, refused.text  # standalone: the engine is the only path
            assert ENGINE_TOKEN not in refused.text

            mount(tmp_path / "engine-admin", NEW_ENGINE_TOKEN)  # the kubelet catches up: no restart
            ok = c.post("/kill-switch/activate", json=ACTIVATE, headers=auth)
            assert ok.status_code == 200, ok.text
            assert ok.json()["engine"] == "halted"
            assert engine.engine.commands[-1].engaged is True
    finally:
        engine.engine.admin_token = ENGINE_TOKEN
    produced = (tmp_path / "audit.jsonl").read_text() if (tmp_path / "audit.jsonl").exists() else ""
    assert NEW_ENGINE_TOKEN not in produced
    assert ENGINE_TOKEN not in produced


def test_api_token_rotation_overlap_then_the_old_token_is_refused(make_client, engine, tmp_path, audit_path):
    """Finding 9: during the overlap window a kill signed with the old token is carried out; after it
    (here a window of 0.5 s) the old token is refused."""
    token_file = mount(tmp_path / "api-token", TOKEN)
    with make_client(None, api_token="", api_token_file=str(token_file), token_overlap_seconds=0.5) as c:
        assert c.get("/test/safety-check", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        mount(tmp_path / "api-token", NEW_TOKEN)
        kill = c.post("/kill-switch/activate", json=ACTIVATE, headers={"Authorization": f"Bearer {TOKEN}"})
        assert kill.status_code == 200, kill.text  # a rotation never refuses a kill
        time.sleep(0.6)
        old = c.get("/test/safety-check", headers={"Authorization": f"Bearer {TOKEN}"})
        assert old.status_code == 401
        assert old.json() == {"detail": "invalid bearer token"}
        new = c.get("/test/safety-check", headers={"Authorization": f"Bearer {NEW_TOKEN}"})
        assert new.status_code == 200
        # The audit log redacts rotated-out tokens too.
        assert TOKEN in c.ctx.tokens.all_known()
    text = "\n".join(str(e) for e in audit_entries(audit_path))
    assert TOKEN not in text
    assert NEW_TOKEN not in text


def test_the_direct_halt_uses_the_previous_engine_token_while_the_engine_lags(make_client, engine, tmp_path):
    """Finding 9: our kubelet synced the rotated engine admin Secret before the engine's did. The direct
    halt is refused with the new token and goes through with the previous one (in its overlap window)."""
    token_file = mount(tmp_path / "engine-admin", ENGINE_TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with make_client(None, engine_admin_token="", engine_admin_token_file=str(token_file)) as c:
        c.ctx.killswitch._engine_token.current()  # the old value is in force
        mount(tmp_path / "engine-admin", NEW_ENGINE_TOKEN)  # rotated here; the engine still has the old
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["engine"] == "halted"
        assert engine.engine.trading_state == "HALTED"
