"""EngineSettings: embedded defaults, the operator's config file (JSON or YAML), the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from quantzoo_api.types import MarketDataKind, TradingMode
from quantzoo_engine.settings import ConfigError, EngineSettings, load_config_file


def test_embedded_defaults_need_nothing() -> None:
    s = EngineSettings.from_env({})
    assert (s.host, s.port) == ("0.0.0.0", 8001)
    assert s.spec.symbols == ["AAPL", "MSFT"]
    assert s.spec.mode is TradingMode.PAPER
    assert s.spec.market_data.kind is MarketDataKind.SIMULATED
    assert s.admin_token is None
    assert not s.watch_kubernetes


def test_json_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "namespace": "trading",
                "name": "momentum",
                "generation": 4,
                "spec": {
                    "symbols": ["SPY"],
                    "risk": {"maxOrderQuantity": 7},
                    "marketData": {"intervalSeconds": 0.05},
                },
            }
        )
    )
    s = EngineSettings.from_env({"QUANTZOO_CONFIG": str(path)})
    assert (s.namespace, s.name, s.generation) == ("trading", "momentum", 4)
    assert s.spec.symbols == ["SPY"]
    assert s.spec.risk.max_order_quantity == 7
    assert s.spec.market_data.interval_seconds == 0.05


def test_yaml_config_file_and_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"namespace": "a", "name": "b", "spec": {"killSwitch": {"engaged": True}}})
    )
    env = {
        "QUANTZOO_CONFIG": str(path),
        "QUANTZOO_NAMESPACE": "override",
        "ENGINE_PORT": "9000",
        "ENGINE_ADMIN_TOKEN": "s3cret",
        "POD_NAME": "engine-0",
        "ENGINE_STATE_DIR": str(tmp_path / "state"),
        "ENGINE_SHUTDOWN_DEADLINE_SECONDS": "5",
        "ENGINE_FEED_INTERVAL_SECONDS": "0.1",
    }
    s = EngineSettings.from_env(env, port=9100)
    assert (s.namespace, s.name, s.port, s.pod_name) == ("override", "b", 9100, "engine-0")
    assert s.admin_token is not None
    assert s.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.spec.kill_switch.engaged
    assert s.spec.market_data.interval_seconds == 0.1
    assert s.shutdown_deadline_seconds == 5
    assert s.state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"spec": {"risk": {"maxOrderQuantity": -1}}}', ".json", "maxOrderQuantity"),
        ('{"spec": {"mode": "live"}}', ".json", "mode live needs a real broker"),
        ('{"spec": {"symbol": ["AAPL"]}}', ".json", "symbol"),
        ('{"spec": {}, "extra": 1}', ".json", "unknown keys extra"),
        ("{not json", ".json", "not valid JSON"),
        ("- a list", ".yaml", "must hold a mapping"),
        ('{"generation": -2}', ".json", "generation"),
        ('{"name": ""}', ".json", "name must be"),
    ],
)
def test_bad_config_files_are_explained(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"config{suffix}"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        EngineSettings.from_env({"QUANTZOO_CONFIG": str(tmp_path / "nope.json")})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENGINE_PORT": "http"}, "ENGINE_PORT"),
        ({"ENGINE_PORT": "70000"}, "port"),
        ({"QUANTZOO_WATCH_KUBERNETES": "maybe"}, "QUANTZOO_WATCH_KUBERNETES"),  # not silently "off"
        ({"QUANTZOO_WATCH_KUBERNETES": "1"}, "namespace and name"),
        ({"ENGINE_FEED_INTERVAL_SECONDS": "0"}, "ENGINE_FEED_INTERVAL_SECONDS"),
    ],
)
def test_bad_environment_is_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineSettings.from_env(env)


def test_alpaca_needs_credentials(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"spec": {"broker": {"kind": "alpaca", "credentialsSecret": "alpaca"}}}))
    with pytest.raises(ConfigError, match="ALPACA_API_KEY"):
        EngineSettings.from_env({"QUANTZOO_CONFIG": str(path)})
    s = EngineSettings.from_env(
        {"QUANTZOO_CONFIG": str(path), "ALPACA_API_KEY": "k", "ALPACA_API_SECRET": "s"}
    )
    assert s.spec.broker.credentials_secret == "alpaca"


def test_watch_mode_settings() -> None:
    s = EngineSettings.from_env(
        {
            "QUANTZOO_WATCH_KUBERNETES": "true",
            "QUANTZOO_NAMESPACE": "t",
            "QUANTZOO_NAME": "demo",
            "KUBECONFIG": "/k",
        }
    )
    assert (s.watch_kubernetes, s.namespace, s.name, s.kubeconfig) == (True, "t", "demo", "/k")
