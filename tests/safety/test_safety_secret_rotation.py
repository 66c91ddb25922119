"""Both tokens the safety service holds rotate without a restart: its own API token and the engine admin
token it uses for direct halts, each read from a file laid out as the kubelet mounts a Secret."""

from __future__ import annotations

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

            engine.engine.admin_token = NEW_ENGINE_TOKEN  # the engine has the new Secret, we do not yet
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


def test_api_token_rotation_refuses_the_old_token(make_client, engine, tmp_path, audit_path):
    token_file = mount(tmp_path / "api-token", TOKEN)
    with make_client(None, api_token="", api_token_file=str(token_file)) as c:
        assert c.get("/test/safety-check", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        mount(tmp_path / "api-token", NEW_TOKEN)
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
