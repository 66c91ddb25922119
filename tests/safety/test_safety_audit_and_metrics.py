"""Audit log (every call, who/what/when/where/result, never a token) and the metrics contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

from quantzoo_safety.audit import REDACTED, AuditLog
from safety_support import ACTIVATE, AUTH, ENGINE_TOKEN, TOKEN, audit_entries

REPO = Path(__file__).resolve().parents[2]


def test_every_call_is_audited_and_no_token_is_written(client, audit_path, caplog):
    caplog.set_level("INFO", logger="quantzoo_safety.audit")
    calls = [
        ("POST", "/kill-switch/activate", ACTIVATE, {}, 401),
        ("POST", "/kill-switch/activate", ACTIVATE, {"Authorization": f"Bearer {TOKEN}WRONG"}, 401),
        ("POST", "/kill-switch/activate", {**ACTIVATE, "close_positions": "yes"}, AUTH, 422),
        ("POST", "/kill-switch/activate", ACTIVATE, AUTH, 200),
        ("POST", "/kill-switch/activate", {**ACTIVATE, "reason": f"pasted {TOKEN} by mistake"}, AUTH, 200),
        ("GET", "/status", None, {}, 200),
        ("GET", "/status", None, AUTH, 200),
        ("GET", "/test/safety-check", None, AUTH, 200),
        ("POST", "/kill-switch/deactivate", {"operator": "alice"}, AUTH, 200),
        ("POST", "/kill-switch/deactivate", {"operator": "alice"}, AUTH, 409),
        ("GET", "/nowhere", None, {}, 404),
    ]
    for method, path, body, headers, code in calls:
        r = client.request(method, path, json=body, headers={**headers, "X-Forwarded-For": "10.1.2.3"})
        assert r.status_code == code, (path, r.text)
        assert TOKEN not in r.text
    client.get("/healthz")
    client.get("/metrics")

    entries = audit_entries(audit_path)
    # One per call; probes (/healthz, /metrics) and the anonymous /status (a snapshot, floodable) are not.
    audited = [c for c in calls if not (c[1] == "/status" and not c[3])]
    assert len(entries) == len(audited)
    for entry, (method, path, _, _, code) in zip(entries, audited, strict=True):
        assert entry["method"] == method
        assert entry["path"] == path
        assert entry["http_status"] == code
        assert entry["client_ip"] == "testclient"
        assert entry["forwarded_for"] == "10.1.2.3"
        assert entry["tradingsystem"] == "trading/demo"
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
        assert entry["result"]
    assert [e["result"] for e in entries[:5]] == [
        "refused",
        "refused",
        "refused",
        "engaged",
        "already engaged",
    ]
    assert entries[0]["detail"] == "missing bearer token"
    assert entries[1]["detail"] == "invalid bearer token"
    assert entries[1]["authenticated"] is False
    assert entries[3]["authenticated"] is True
    assert entries[3]["operator"] == "alice"
    assert entries[3]["reason"] == ACTIVATE["reason"]
    assert entries[3]["kubernetes"] == "patched"
    assert entries[3]["engine"] == "halted"
    assert entries[4]["reason"] == f"pasted {REDACTED} by mistake"
    assert entries[3]["engine_ack"]["cancelled_orders"] == ["o-1", "o-2"]  # what the engagement did
    assert entries[5]["view"] == "full"
    assert entries[7]["action"] == "kill-switch.deactivate"
    assert entries[7]["result"] == "released"
    assert entries[8]["result"] == "refused"

    text = audit_path.read_text()
    assert TOKEN not in text
    assert ENGINE_TOKEN not in text
    assert "Bearer" not in text
    logged = "\n".join(r.getMessage() + json.dumps(getattr(r, "audit", {})) for r in caplog.records)
    assert "kill-switch.activate" in logged
    assert TOKEN not in logged
    assert ENGINE_TOKEN not in logged


def test_audit_in_status_is_the_recent_entries(client):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    full = client.get("/status", headers=AUTH).json()
    assert full["audit"][-1]["action"] == "kill-switch.activate"
    assert full["audit"][-1]["operator"] == "alice"


def test_audit_log_survives_an_unwritable_file(tmp_path):
    log = AuditLog(str(tmp_path / "missing-dir" / "audit.jsonl"), tradingsystem="ns/x")
    entry = log.record("kill-switch.activate", result="engaged", operator="a")
    assert entry["operator"] == "a"
    assert log.write_failures == 1
    assert log.recent(1) == [entry]


def test_audit_scrubs_nested_values():
    log = AuditLog(None, tradingsystem="ns/x", secrets_provider=lambda: ["hunter2"])
    entry = log.record("x", result="ok", nested={"a": ["say hunter2"]}, detail="hunter2")
    assert entry["nested"] == {"a": [f"say {REDACTED}"]}
    assert entry["detail"] == REDACTED


# ---------------------------------------------------------------------------------------------- metrics
def documented_safety_metrics() -> dict[str, str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    section = text.split("## Safety", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(quantzoo_safety_[a-z_]+)` \| (\w+) \|", section, flags=re.M))


def test_every_documented_metric_is_exported_with_its_type(client):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    text = client.get("/metrics").text
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    documented = documented_safety_metrics()
    assert len(documented) >= 9
    for name, kind in documented.items():
        assert kind in (types.get(name), types.get(name.removesuffix("_total"))), name
        if kind != "histogram":
            assert re.search(rf"^{name}(\{{|\s)", text, flags=re.M), name
    exported = {n for n in types if n.startswith("quantzoo_safety_") and not n.endswith("_created")}
    exported = {n if n.endswith("_total") or types[n] != "counter" else n + "_total" for n in exported}
    assert exported <= set(documented), exported - set(documented)


def test_metric_values_follow_the_calls(client):
    client.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH)
    client.post("/kill-switch/activate", json=ACTIVATE)
    text = client.get("/metrics").text
    assert 'quantzoo_safety_kill_switch_activations_total{source="api"} 1.0' in text
    assert "quantzoo_safety_kill_switch_engaged 1.0" in text
    assert "quantzoo_safety_direct_halts_total 1.0" in text
    assert "quantzoo_safety_auth_failures_total 1.0" in text
    assert 'quantzoo_safety_requests_total{code="401",endpoint="/kill-switch/activate"} 1.0' in text
    assert 'quantzoo_safety_auto_trips_total{reason="error_burst"} 0.0' in text
    assert "quantzoo_safety_activate_duration_seconds_count 1.0" in text


def test_metrics_are_per_app(make_client, fake_kube):
    with make_client(fake_kube) as a, make_client(fake_kube) as b:
        a.post("/kill-switch/activate", json=ACTIVATE)
        assert a.ctx.metrics.auth_failures._value.get() == 1
        assert b.ctx.metrics.auth_failures._value.get() == 0
