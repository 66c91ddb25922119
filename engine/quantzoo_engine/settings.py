"""EngineSettings: one typed object built from the environment and the operator-rendered config file.

The config file (env QUANTZOO_CONFIG, JSON or YAML) is `{"namespace", "name", "spec", "generation"?}`
with the TradingSystem spec in the CRD's camelCase. It is validated with `quantzoo_api.types.parse_spec`,
the same models that mirror the CRD, so the engine and the CRD cannot drift. Without a config file the
engine runs on the embedded defaults (simulated feed, paper broker, AAPL and MSFT).

Environment (all optional; read through pydantic-settings' environment source by `from_env`, and a
value it cannot use -- a port that is not a number, a boolean that is not 1/0/true/false/yes/no/on/off --
is a ConfigError naming the variable):
  ENGINE_HOST, ENGINE_PORT                 listen address (default 0.0.0.0:8001)
  QUANTZOO_CONFIG                          path of the config file
  ENGINE_ADMIN_TOKEN_FILE                  file with the admin API's bearer token (a mounted Secret;
                                           re-read when it changes, so a rotation needs no restart)
  ENGINE_ADMIN_TOKEN                       the token itself when there is no file (unset: admin API
                                           refuses all)
  POD_NAME                                 replica name in acknowledgements (default: hostname)
  QUANTZOO_WATCH_KUBERNETES=1              watch the own TradingSystem (needs namespace and name)
  QUANTZOO_WATCH_LEVELS=0                  with the watch: do NOT also watch the other levels covering
                                           the system (TradingHalts; its TradingAccount when
                                           spec.accountRef names one). Default: watch them (issue #13)
  QUANTZOO_NAMESPACE, QUANTZOO_NAME        which TradingSystem (override the config file's)
  KUBECONFIG                               kubeconfig for the watch (default: in-cluster)
  ENGINE_STATE_DIR                         where the state is persisted on SIGTERM (default: a temp dir)
  LOG_LEVEL                                default INFO
  ENGINE_SHUTDOWN_DEADLINE_SECONDS         SIGTERM budget, inside the pod's 30 s grace (default 20)
  ENGINE_KILL_DEADLINE_SECONDS             kill path budget at the broker (default 1.5, so the ack
                                           arrives inside the operator's 2 s push timeout)
  ENGINE_BROKER_TIMEOUT_SECONDS            ordinary broker call timeout (default 10)
  ENGINE_RECONCILE_INTERVAL_SECONDS        remote broker position/order sync (default 5)
  ENGINE_OUTLIER_PCT                       a bar moving more than this % is refused (default 10)
  ENGINE_FEED_INTERVAL_SECONDS             overrides spec.marketData.intervalSeconds (demos, tests)
  ENGINE_PROOF_TIMEOUT_SECONDS             halt (no_proof_of_state) after this long without proof of the
                                           kill switch's state: read, watch event, bookmark (default 15)
  ENGINE_WATCH_TIMEOUT_SECONDS             the API server ends each watch after this (a bookmark first);
                                           the client gives up a watch silent 5 s longer (default 5)
  ENGINE_KUBE_REQUEST_TIMEOUT_SECONDS      client-side timeout of every other API call (default 3)
  ENGINE_LEASE_DURATION_SECONDS            the trading Lease's duration (default 15)
  ENGINE_LEASE_RENEW_SECONDS               renew it this often (default 5)
  ENGINE_LEASE_MARGIN_SECONDS              stop submitting this long before it could expire (default 5)
  ALPACA_API_KEY_FILE, ALPACA_API_SECRET_FILE
                                           Alpaca credentials: files of spec.broker.credentialsSecret
                                           (re-read when they change; the Alpaca clients are rebuilt)
  ALPACA_API_KEY, ALPACA_API_SECRET        the same as values, when there are no files
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError
from quantzoo_api import ENGINE_PORT
from quantzoo_api.env_settings import EnvSettings, setting
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV
from quantzoo_api.secret_file import DEFAULT_OVERLAP_SECONDS, FILE_SUFFIX, SecretFile, read_together
from quantzoo_api.types import TradingSystemSpec, parse_spec

_CONFIG_KEYS = {"namespace", "name", "spec", "generation"}


class ConfigError(Exception):
    """The configuration cannot be used; the message says why, in words a person can act on."""


class EngineSettings(EnvSettings):
    """Keyword construction (tests, the app's default) reads nothing from the process environment;
    `from_env` reads the variables named beside each field (pydantic-settings' env source)."""

    host: str = setting("ENGINE_HOST", "0.0.0.0")
    port: int = setting("ENGINE_PORT", ENGINE_PORT, ge=1, le=65535)
    namespace: str = setting("QUANTZOO_NAMESPACE", "default")
    name: str = setting("QUANTZOO_NAME", "standalone")
    generation: int | None = None
    spec: TradingSystemSpec = TradingSystemSpec()
    config_path: Path | None = None  # QUANTZOO_CONFIG, read by from_env (namespace, name, spec)
    admin_token: SecretStr | None = setting(ENGINE_ADMIN_TOKEN_ENV, None)
    admin_token_file: Path | None = setting(ENGINE_ADMIN_TOKEN_ENV + FILE_SUFFIX, None)
    # How long a rotated-out admin token stays valid after the new one is seen (no rotation refuses a kill).
    token_overlap_seconds: float = setting(
        "ENGINE_TOKEN_OVERLAP_SECONDS", DEFAULT_OVERLAP_SECONDS, ge=0, le=86_400
    )
    pod_name: str = Field(default_factory=socket.gethostname, validation_alias="POD_NAME")
    watch_kubernetes: bool = setting("QUANTZOO_WATCH_KUBERNETES", False)
    # With watch_kubernetes: also watch every other level that covers the system (level_watch.py).
    watch_levels: bool = setting("QUANTZOO_WATCH_LEVELS", True)
    kubeconfig: str | None = setting("KUBECONFIG", None)
    state_dir: Path = setting("ENGINE_STATE_DIR", Path(tempfile.gettempdir()) / "quantzoo-engine")
    log_level: str = setting("LOG_LEVEL", "INFO")
    shutdown_deadline_seconds: float = setting("ENGINE_SHUTDOWN_DEADLINE_SECONDS", 20.0, gt=0, le=3600)
    kill_deadline_seconds: float = setting("ENGINE_KILL_DEADLINE_SECONDS", 1.5, gt=0, le=120)
    broker_timeout_seconds: float = setting("ENGINE_BROKER_TIMEOUT_SECONDS", 10.0, gt=0, le=300)
    reconcile_interval_seconds: float = setting("ENGINE_RECONCILE_INTERVAL_SECONDS", 5.0, gt=0, le=3600)
    outlier_pct: float = setting("ENGINE_OUTLIER_PCT", 10.0, gt=0, le=1000)
    proof_timeout_seconds: float = setting("ENGINE_PROOF_TIMEOUT_SECONDS", 15.0, gt=0, le=3600)
    watch_timeout_seconds: int = setting("ENGINE_WATCH_TIMEOUT_SECONDS", 5, ge=1, le=3600)
    kube_request_timeout_seconds: float = setting("ENGINE_KUBE_REQUEST_TIMEOUT_SECONDS", 3.0, gt=0, le=300)
    lease_duration_seconds: int = setting("ENGINE_LEASE_DURATION_SECONDS", 15, ge=2, le=3600)
    lease_renew_seconds: float = setting("ENGINE_LEASE_RENEW_SECONDS", 5.0, gt=0, le=3600)
    lease_margin_seconds: float = setting("ENGINE_LEASE_MARGIN_SECONDS", 5.0, ge=0, le=3600)
    # The strategy in a process of its own, out of reach of the kill path (strategy/runner.py).
    isolate_strategy: bool = setting("ENGINE_ISOLATE_STRATEGY", True)
    alpaca_api_key: SecretStr | None = setting("ALPACA_API_KEY", None)
    alpaca_api_secret: SecretStr | None = setting("ALPACA_API_SECRET", None)
    alpaca_api_key_file: Path | None = setting("ALPACA_API_KEY" + FILE_SUFFIX, None)
    alpaca_api_secret_file: Path | None = setting("ALPACA_API_SECRET" + FILE_SUFFIX, None)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        config_path: str | Path | None = None,
    ) -> EngineSettings:
        """Settings from the environment; explicit arguments (CLI flags) win over it."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_path or env.get("QUANTZOO_CONFIG") or None
        if path:
            values.update(load_config_file(Path(path)))
            values["config_path"] = Path(path)
        spec: TradingSystemSpec = values.get("spec", TradingSystemSpec())
        if interval := env.get("ENGINE_FEED_INTERVAL_SECONDS"):
            spec = _with_interval(spec, _number(interval, "ENGINE_FEED_INTERVAL_SECONDS"))
        values["spec"] = spec
        values.update(cls.from_variables(env))
        if host is not None:
            values["host"] = host
        if port is not None:
            values["port"] = port
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise ConfigError(cls.explain(exc)) from exc
        settings.check_consistent()
        return settings

    def check_consistent(self) -> None:
        if self.lease_renew_seconds + self.kube_request_timeout_seconds >= (
            self.lease_duration_seconds - self.lease_margin_seconds
        ):
            raise ConfigError(
                "ENGINE_LEASE_RENEW_SECONDS + ENGINE_KUBE_REQUEST_TIMEOUT_SECONDS must be shorter than "
                "ENGINE_LEASE_DURATION_SECONDS - ENGINE_LEASE_MARGIN_SECONDS, or the engine would stop "
                "trading between two healthy renewals"
            )
        if self.watch_kubernetes and (not self.namespace or not self.name or self.name == "standalone"):
            raise ConfigError(
                "QUANTZOO_WATCH_KUBERNETES=1 needs the TradingSystem's namespace and name "
                "(QUANTZOO_NAMESPACE and QUANTZOO_NAME, or the config file)"
            )
        has_alpaca = all(self.alpaca_credentials().current())
        if self.spec.broker.kind == "alpaca" and not has_alpaca:
            raise ConfigError(
                "broker.kind alpaca needs ALPACA_API_KEY and ALPACA_API_SECRET (as files: "
                "ALPACA_API_KEY_FILE and ALPACA_API_SECRET_FILE; or in the environment) "
                f"from the Secret {self.spec.broker.credentials_secret!r}"
            )
        if self.spec.market_data.kind == "alpaca" and not has_alpaca:
            raise ConfigError("marketData.kind alpaca needs ALPACA_API_KEY and ALPACA_API_SECRET")
        if self.spec.market_data.kind == "replay" and not self.spec.market_data.replay_path:
            raise ConfigError("marketData.kind replay needs marketData.replayPath")

    def admin_token_source(self) -> SecretFile:
        """The admin token in force: the file (re-read when it changes) or the env value."""
        return SecretFile(
            self.admin_token_file,
            _plain(self.admin_token),
            label=ENGINE_ADMIN_TOKEN_ENV,
            overlap_seconds=self.token_overlap_seconds,
        )

    def alpaca_credentials(self) -> AlpacaCredentials:
        return AlpacaCredentials(
            SecretFile(self.alpaca_api_key_file, _plain(self.alpaca_api_key), label="ALPACA_API_KEY"),
            SecretFile(
                self.alpaca_api_secret_file, _plain(self.alpaca_api_secret), label="ALPACA_API_SECRET"
            ),
        )


class AlpacaCredentials:
    """The Alpaca key pair in force; both files of the Secret are read as one consistent pair."""

    def __init__(self, key: SecretFile, secret: SecretFile) -> None:
        self.key, self.secret = key, secret

    def current(self) -> tuple[str, str]:
        key, secret = read_together([self.key, self.secret])
        return key, secret

    def known(self) -> list[str]:
        return [*self.key.known(), *self.secret.known()]


def _plain(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _number(text: str, var: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{var}={text!r} is not a number") from None


def _with_interval(spec: TradingSystemSpec, seconds: float) -> TradingSystemSpec:
    raw = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    raw.setdefault("marketData", {})["intervalSeconds"] = seconds
    try:
        return parse_spec(raw)
    except ValidationError as exc:
        raise ConfigError("ENGINE_FEED_INTERVAL_SECONDS: " + _explain(exc)) from exc


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read the operator-rendered config file; returns namespace, name, generation and a parsed spec."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping with namespace, name and spec")
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown keys {', '.join(unknown)} (allowed: {sorted(_CONFIG_KEYS)})"
        )
    out: dict[str, Any] = {}
    for key in ("namespace", "name"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise ConfigError(f"config file {path}: {key} must be a non-empty string")
            out[key] = raw[key]
    if "generation" in raw:
        if (
            not isinstance(raw["generation"], int)
            or isinstance(raw["generation"], bool)
            or raw["generation"] < 0
        ):
            raise ConfigError(f"config file {path}: generation must be a non-negative integer")
        out["generation"] = raw["generation"]
    spec = raw.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"config file {path}: spec must be a mapping")
    try:
        out["spec"] = parse_spec(spec)
    except ValidationError as exc:
        raise ConfigError(f"config file {path}: invalid spec: {_explain(exc)}") from exc
    return out
