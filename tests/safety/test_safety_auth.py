"""Where the safety service checks the token: constant time, missing/wrong/right, rotation via file."""

from __future__ import annotations

import os

import pytest
from quantzoo_api import secret_file
from quantzoo_safety.auth import TokenCheck, TokenSource, check_token, presented_token
from safety_support import ACTIVATE, AUTH, TOKEN


@pytest.mark.parametrize(
    ("header", "expected", "result"),
    [
        (None, TOKEN, TokenCheck.MISSING),
        ("", TOKEN, TokenCheck.MISSING),
        ("Bearer ", TOKEN, TokenCheck.MISSING),
        ("Bearer wrong", TOKEN, TokenCheck.INVALID),
        (f"Bearer {TOKEN}x", TOKEN, TokenCheck.INVALID),
        (f"Basic {TOKEN}", TOKEN, TokenCheck.INVALID),
        (f"Bearer {TOKEN}", TOKEN, TokenCheck.OK),
        (f"bearer   {TOKEN} ", TOKEN, TokenCheck.OK),
        (f"Bearer {TOKEN}", "", TokenCheck.UNCONFIGURED),
        ("Bearer é-non-ascii", TOKEN, TokenCheck.INVALID),
    ],
)
def test_check_token(header, expected, result):
    assert check_token(header, expected) is result


def test_presented_token():
    assert presented_token("Bearer abc") == "abc"
    assert presented_token("Token abc") == ""
    assert presented_token(None) is None


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = secret_file.secrets.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(secret_file.secrets, "compare_digest", spy)
    assert check_token("Bearer nope", TOKEN) is TokenCheck.INVALID
    assert check_token(f"Bearer {TOKEN}", TOKEN) is TokenCheck.OK
    assert calls == [(bytes, bytes), (bytes, bytes)]


def test_token_file_wins_and_rotation_is_picked_up(tmp_path):
    path = tmp_path / "token"
    path.write_text("first\n")
    source = TokenSource("from-env", str(path))
    assert source.current() == "first"
    path.write_text("second-longer")
    assert source.current() == "second-longer"
    # Same size, new content: the mtime moves, so it is re-read too.
    path.write_text("third-longer!")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert source.current() == "third-longer!"
    path.unlink()  # mid-rotation: keep the last good token
    assert source.current() == "third-longer!"
    # Rotated-out tokens are still secrets: redaction keeps knowing them.
    assert set(source.all_known()) == {"from-env", "first", "second-longer", "third-longer!"}


def test_env_token_only():
    assert TokenSource("  tok \n").current() == "tok"
    assert TokenSource("").current() == ""


def test_activate_needs_a_token(client, engine, fake_kube):
    r = client.post("/kill-switch/activate", json=ACTIVATE)
    assert r.status_code == 401
    assert r.json() == {"detail": "missing bearer token"}
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.post("/kill-switch/activate", json=ACTIVATE, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json() == {"detail": "invalid bearer token"}
    assert fake_kube.patches == []
    assert engine.engine.commands == []
    assert client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).status_code == 200


def test_wrong_token_refused_before_the_body_is_read(client):
    wrong = {"Authorization": "Bearer wrong"}
    r = client.post("/kill-switch/deactivate", content=b"{not json", headers=wrong)
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/kill-switch/activate"), ("POST", "/kill-switch/deactivate"), ("GET", "/test/safety-check")],
)
def test_every_authenticated_endpoint_refuses_without_token(client, method, path):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.request(method, path, json={"operator": "x"}, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert TOKEN not in r.text


def test_status_with_and_without_token(client):
    public = client.get("/status")
    assert public.status_code == 200
    assert set(public.json()) == {"service", "kill_switch_engaged", "trading_state"}
    empty = client.get("/status", headers={"Authorization": "Bearer "})  # `$SAFETY_API_TOKEN` unset
    assert set(empty.json()) == {"service", "kill_switch_engaged", "trading_state"}
    full = client.get("/status", headers=AUTH)
    assert full.status_code == 200
    assert {"kill_switch", "engine", "apiserver", "audit", "watchdog"} <= set(full.json())
    wrong = client.get("/status", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid bearer token"}


def test_auth_failures_are_counted(client):
    client.get("/test/safety-check", headers={"Authorization": "Bearer wrong"})
    client.get("/test/safety-check")
    assert client.ctx.metrics.auth_failures._value.get() == 2


def test_rotation_through_the_running_service(make_client, fake_kube, tmp_path):
    """Without an overlap window the old token is refused at once (test_safety_secret_rotation.py: with)."""
    path = tmp_path / "token"
    path.write_text("old-token")
    with make_client(fake_kube, api_token="", api_token_file=str(path), token_overlap_seconds=0) as c:
        assert c.get("/test/safety-check", headers=c.auth("old-token")).status_code == 200
        path.write_text("new-token-after-rotation")
        assert c.get("/test/safety-check", headers=c.auth("old-token")).status_code == 401
        assert c.get("/test/safety-check", headers=c.auth("new-token-after-rotation")).status_code == 200


def test_no_token_configured_refuses_with_503(make_client, fake_kube):
    with make_client(fake_kube, api_token="") as c:
        r = c.post("/kill-switch/activate", json=ACTIVATE, headers=c.auth("anything"))
        assert r.status_code == 503
        assert "no API token is configured" in r.json()["detail"]
        assert fake_kube.patches == []
        assert c.get("/status").status_code == 200  # the public view still answers
