"""Settings from the environment and the optional QUANTZOO_CONFIG file."""

from __future__ import annotations

import json

import pytest
from quantzoo_safety.settings import Settings, SettingsError


def test_defaults_need_a_name_unless_standalone():
    with pytest.raises(SettingsError, match="QUANTZOO_NAME"):
        Settings.from_env({})
    s = Settings.from_env({"QUANTZOO_KUBERNETES": "0"})
    assert s.kubernetes_enabled is False
    assert s.engine_url == "http://127.0.0.1:8001"
    assert s.port == 8888
    assert s.host == "0.0.0.0"
    assert s.namespace == "default"


def test_everything_from_env(tmp_path):
    env = {
        "QUANTZOO_NAMESPACE": "trading",
        "QUANTZOO_NAME": "demo",
        "ENGINE_URL": "http://demo-engine:8001/",
        "ENGINE_ADMIN_TOKEN": "zz-engine-secret",
        "SAFETY_API_TOKEN": "zz-safety-secret",
        "SAFETY_API_TOKEN_FILE": "/var/run/secrets/safety/token",
        "SAFETY_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "SAFETY_PORT": "9999",
        "KUBECONFIG": "/tmp/kc",
        "SAFETY_KUBE_TIMEOUT_SECONDS": "1.5",
        "SAFETY_MAX_DAILY_DRAWDOWN_PCT": "2.5",
        "SAFETY_AUTO_TRIP_ENABLED": "false",
        "SAFETY_MAX_REJECTS_PER_MINUTE": "7",
    }
    s = Settings.from_env(env)
    assert s.tradingsystem == "trading/demo"
    assert s.engine_url == "http://demo-engine:8001"
    assert s.port == 9999
    assert s.kube_timeout_seconds == 1.5
    assert s.kubeconfig == "/tmp/kc"
    assert s.api_token_file == "/var/run/secrets/safety/token"
    assert dict(s.limit_overrides) == {
        "max_daily_drawdown_pct": 2.5,
        "enabled": False,
        "max_rejects_per_minute": 7,
    }
    assert s.engine_admin_token == "zz-engine-secret"
    assert "zz-" not in repr(s)


@pytest.mark.parametrize(
    ("var", "value"),
    [("SAFETY_PORT", "eighty"), ("SAFETY_MAX_DAILY_DRAWDOWN_PCT", "-1"), ("QUANTZOO_KUBERNETES", "maybe")],
)
def test_bad_values_name_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({"QUANTZOO_NAME": "demo", var: value})


def test_config_file_like_the_engine(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "namespace": "trading",
                "name": "demo",
                "spec": {
                    "risk": {"maxDailyDrawdownPct": 3.0},
                    "safety": {"autoTrip": {"maxErrorsPerMinute": 4}},
                },
            }
        )
    )
    s = Settings.from_env({"QUANTZOO_CONFIG": str(path)})
    assert s.tradingsystem == "trading/demo"
    assert s.spec.risk.max_daily_drawdown_pct == 3.0
    assert s.spec.safety.auto_trip.max_errors_per_minute == 4
    # Env wins over the file.
    assert Settings.from_env({"QUANTZOO_CONFIG": str(path), "QUANTZOO_NAME": "other"}).name == "other"


def test_config_file_yaml_and_unknown_spec(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("namespace: trading\nname: demo\nspec:\n  notAField: 1\n")
    s = Settings.from_env({"QUANTZOO_CONFIG": str(path)})
    assert s.name == "demo"
    assert s.spec.risk.max_daily_drawdown_pct == 5.0  # defaults kept, error logged
