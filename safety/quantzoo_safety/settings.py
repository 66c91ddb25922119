"""Every setting of the safety service, read once from the environment (and optionally a config file).

Read through pydantic-settings' environment source (quantzoo_api.env_settings): a value it cannot use is
a SettingsError that names the variable.

Precedence for the automatic-trip limits: an explicit `SAFETY_*` env var, else the TradingSystem spec
(`spec.safety.autoTrip`, `spec.risk`) read live from the API server by the watchdog, else the spec in the
`QUANTZOO_CONFIG` file, else the CRD defaults (`AutoTripSpec`, `RiskLimits`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator
from quantzoo_api import SAFETY_PORT
from quantzoo_api.env_settings import EnvSettings, setting
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV, SAFETY_API_TOKEN_ENV
from quantzoo_api.secret_file import DEFAULT_OVERLAP_SECONDS
from quantzoo_api.types import TradingSystemSpec, parse_spec

log = logging.getLogger(__name__)

SAFETY_API_TOKEN_FILE_ENV = "SAFETY_API_TOKEN_FILE"  # noqa: S105 - the name of a variable, not a secret
ENGINE_ADMIN_TOKEN_FILE_ENV = ENGINE_ADMIN_TOKEN_ENV + "_FILE"
DEFAULT_ENGINE_URL = "http://127.0.0.1:8001"


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


class LimitOverrides(EnvSettings):
    """The automatic-trip limits set by an explicit `SAFETY_*` variable (they win over the spec)."""

    enabled: bool | None = setting("SAFETY_AUTO_TRIP_ENABLED", None)
    heartbeat_timeout_seconds: float | None = setting("SAFETY_HEARTBEAT_TIMEOUT_SECONDS", None, gt=0)
    check_interval_seconds: float | None = setting("SAFETY_CHECK_INTERVAL_SECONDS", None, gt=0)
    max_rejects_per_minute: int | None = setting("SAFETY_MAX_REJECTS_PER_MINUTE", None, gt=0)
    max_errors_per_minute: int | None = setting("SAFETY_MAX_ERRORS_PER_MINUTE", None, gt=0)
    max_daily_drawdown_pct: float | None = setting("SAFETY_MAX_DAILY_DRAWDOWN_PCT", None, gt=0)
    stale_data_seconds: float | None = setting("SAFETY_STALE_DATA_SECONDS", None, gt=0)
    startup_grace_seconds: float | None = setting("SAFETY_STARTUP_GRACE_SECONDS", None, gt=0)


def _read_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SettingsError(f"QUANTZOO_CONFIG={path}: expected an object with namespace, name and spec")
    return data


class Settings(EnvSettings):
    """Keyword construction (tests) reads nothing from the process environment; `from_env` reads the
    variables named beside each field (pydantic-settings' environment source)."""

    namespace: str = setting("QUANTZOO_NAMESPACE", "default")
    name: str = setting("QUANTZOO_NAME", "")
    engine_url: str = setting("ENGINE_URL", DEFAULT_ENGINE_URL)
    # The engine's admin token (a different secret from the safety API token). Never logged.
    engine_admin_token: str = Field("", repr=False, validation_alias=ENGINE_ADMIN_TOKEN_ENV)
    # A mounted Secret file with the engine's admin token (wins over the env value; re-read on change).
    engine_admin_token_file: str | None = setting(ENGINE_ADMIN_TOKEN_FILE_ENV, None)
    # The safety API token: from a file (re-read on change, so a rotated Secret needs no restart) or env.
    api_token: str = Field("", repr=False, validation_alias=SAFETY_API_TOKEN_ENV)
    api_token_file: str | None = setting(SAFETY_API_TOKEN_FILE_ENV, None)
    # How long a rotated-out token (API or engine admin) stays valid after the new one is seen.
    token_overlap_seconds: float = setting("SAFETY_TOKEN_OVERLAP_SECONDS", DEFAULT_OVERLAP_SECONDS, ge=0)
    kubernetes_enabled: bool = setting("QUANTZOO_KUBERNETES", True)
    kubeconfig: str | None = setting("KUBECONFIG", None)
    # Deadline for one call to the API server and one call to the engine.
    kube_timeout_seconds: float = setting("SAFETY_KUBE_TIMEOUT_SECONDS", 2.0, gt=0)
    engine_timeout_seconds: float = setting("SAFETY_ENGINE_TIMEOUT_SECONDS", 2.0, gt=0)
    audit_log_path: str | None = setting("SAFETY_AUDIT_LOG", None)
    # A direct halt not yet recorded in the TradingSystem survives a restart here (pending_store.py).
    pending_file: str | None = setting("SAFETY_PENDING_FILE", None)
    audit_memory_entries: int = 50
    host: str = "0.0.0.0"
    port: int = setting("SAFETY_PORT", SAFETY_PORT, gt=0, le=65535)
    # Spec from QUANTZOO_CONFIG (or defaults): the watchdog's limits until it has read the live CR.
    spec: TradingSystemSpec = Field(default_factory=TradingSystemSpec)
    # Explicit SAFETY_* limit overrides (LimitOverrides), by limit name.
    limit_overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("engine_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @property
    def tradingsystem(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        config_path = env.get("QUANTZOO_CONFIG")
        if config_path:
            data = _read_config_file(config_path)
            values["namespace"] = str(data.get("namespace") or "") or "default"
            values["name"] = str(data.get("name") or "")
            try:
                values["spec"] = parse_spec(data.get("spec"))
            except ValueError as exc:
                # A safety service that refuses to start protects nothing: keep the CRD defaults and say so.
                log.error("QUANTZOO_CONFIG %s: spec not understood, using defaults: %s", config_path, exc)
        values.update(cls.from_variables(env))
        try:
            overrides = LimitOverrides(**LimitOverrides.from_variables(env))
            settings = cls(**values, limit_overrides=overrides.model_dump(exclude_none=True))
        except ValidationError as exc:
            explain = LimitOverrides.explain if exc.title == LimitOverrides.__name__ else cls.explain
            raise SettingsError(explain(exc)) from None
        if settings.kubernetes_enabled and not settings.name:
            raise SettingsError(
                "QUANTZOO_NAME (or name in QUANTZOO_CONFIG) is required unless QUANTZOO_KUBERNETES=0"
            )
        return settings if settings.name else settings.model_copy(update={"name": "standalone"})
