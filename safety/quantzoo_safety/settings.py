"""Every setting of the safety service, read once from the environment (and optionally a config file).

Precedence for the automatic-trip limits: an explicit `SAFETY_*` env var, else the TradingSystem spec
(`spec.safety.autoTrip`, `spec.risk`) read live from the API server by the watchdog, else the spec in the
`QUANTZOO_CONFIG` file, else the CRD defaults (`AutoTripSpec`, `RiskLimits`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from quantzoo_api import SAFETY_PORT
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV, SAFETY_API_TOKEN_ENV
from quantzoo_api.secret_file import DEFAULT_OVERLAP_SECONDS
from quantzoo_api.types import TradingSystemSpec, parse_spec

log = logging.getLogger(__name__)

SAFETY_API_TOKEN_FILE_ENV = "SAFETY_API_TOKEN_FILE"  # noqa: S105 - the name of a variable, not a secret
ENGINE_ADMIN_TOKEN_FILE_ENV = ENGINE_ADMIN_TOKEN_ENV + "_FILE"
DEFAULT_ENGINE_URL = "http://127.0.0.1:8001"

# Env var -> (limit name, type). Set, they win over the TradingSystem spec.
LIMIT_ENV_VARS: dict[str, tuple[str, type]] = {
    "SAFETY_AUTO_TRIP_ENABLED": ("enabled", bool),
    "SAFETY_HEARTBEAT_TIMEOUT_SECONDS": ("heartbeat_timeout_seconds", float),
    "SAFETY_CHECK_INTERVAL_SECONDS": ("check_interval_seconds", float),
    "SAFETY_MAX_REJECTS_PER_MINUTE": ("max_rejects_per_minute", int),
    "SAFETY_MAX_ERRORS_PER_MINUTE": ("max_errors_per_minute", int),
    "SAFETY_MAX_DAILY_DRAWDOWN_PCT": ("max_daily_drawdown_pct", float),
    "SAFETY_STALE_DATA_SECONDS": ("stale_data_seconds", float),
    "SAFETY_STARTUP_GRACE_SECONDS": ("startup_grace_seconds", float),
}


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        return _parse_bool(name, raw)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _read_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SettingsError(f"QUANTZOO_CONFIG={path}: expected an object with namespace, name and spec")
    return data


@dataclass(frozen=True)
class Settings:
    namespace: str = "default"
    name: str = ""
    engine_url: str = DEFAULT_ENGINE_URL
    # The engine's admin token (a different secret from the safety API token). Never logged.
    engine_admin_token: str = field(default="", repr=False)
    # A mounted Secret file with the engine's admin token (wins over the env value; re-read on change).
    engine_admin_token_file: str | None = None
    # The safety API token: from a file (re-read on change, so a rotated Secret needs no restart) or env.
    api_token: str = field(default="", repr=False)
    api_token_file: str | None = None
    # How long a rotated-out token (API or engine admin) stays valid after the new one is seen.
    token_overlap_seconds: float = DEFAULT_OVERLAP_SECONDS
    kubernetes_enabled: bool = True
    kubeconfig: str | None = None
    # Deadline for one call to the API server and one call to the engine.
    kube_timeout_seconds: float = 2.0
    engine_timeout_seconds: float = 2.0
    audit_log_path: str | None = None
    # A direct halt not yet recorded in the TradingSystem survives a restart here (pending_store.py).
    pending_file: str | None = None
    audit_memory_entries: int = 50
    host: str = "0.0.0.0"
    port: int = SAFETY_PORT
    # Spec from QUANTZOO_CONFIG (or defaults): the watchdog's limits until it has read the live CR.
    spec: TradingSystemSpec = field(default_factory=TradingSystemSpec)
    # Explicit SAFETY_* limit overrides, by limit name.
    limit_overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tradingsystem(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        namespace, name = "", ""
        spec = TradingSystemSpec()
        config_path = env.get("QUANTZOO_CONFIG")
        if config_path:
            data = _read_config_file(config_path)
            namespace = str(data.get("namespace") or "")
            name = str(data.get("name") or "")
            try:
                spec = parse_spec(data.get("spec"))
            except ValueError as exc:
                # A safety service that refuses to start protects nothing: keep the CRD defaults and say so.
                log.error("QUANTZOO_CONFIG %s: spec not understood, using defaults: %s", config_path, exc)
        namespace = env.get("QUANTZOO_NAMESPACE") or namespace or "default"
        name = env.get("QUANTZOO_NAME") or name

        overrides: dict[str, Any] = {}
        for var, (limit, kind) in LIMIT_ENV_VARS.items():
            raw = env.get(var)
            if raw not in (None, ""):
                overrides[limit] = _parse(var, raw, kind)

        kube_enabled = _parse_bool("QUANTZOO_KUBERNETES", env.get("QUANTZOO_KUBERNETES", "1"))
        if kube_enabled and not name:
            raise SettingsError(
                "QUANTZOO_NAME (or name in QUANTZOO_CONFIG) is required unless QUANTZOO_KUBERNETES=0"
            )

        port_raw = env.get("SAFETY_PORT")
        return cls(
            namespace=namespace,
            name=name or "standalone",
            engine_url=(env.get("ENGINE_URL") or DEFAULT_ENGINE_URL).rstrip("/"),
            engine_admin_token=env.get(ENGINE_ADMIN_TOKEN_ENV, ""),
            engine_admin_token_file=env.get(ENGINE_ADMIN_TOKEN_FILE_ENV) or None,
            api_token=env.get(SAFETY_API_TOKEN_ENV, ""),
            api_token_file=env.get(SAFETY_API_TOKEN_FILE_ENV) or None,
            token_overlap_seconds=float(env.get("SAFETY_TOKEN_OVERLAP_SECONDS") or DEFAULT_OVERLAP_SECONDS),
            kubernetes_enabled=kube_enabled,
            kubeconfig=env.get("KUBECONFIG") or None,
            kube_timeout_seconds=_parse(
                "SAFETY_KUBE_TIMEOUT_SECONDS", env.get("SAFETY_KUBE_TIMEOUT_SECONDS", "2"), float
            ),
            engine_timeout_seconds=_parse(
                "SAFETY_ENGINE_TIMEOUT_SECONDS", env.get("SAFETY_ENGINE_TIMEOUT_SECONDS", "2"), float
            ),
            audit_log_path=env.get("SAFETY_AUDIT_LOG") or None,
            pending_file=env.get("SAFETY_PENDING_FILE") or None,
            port=_parse("SAFETY_PORT", port_raw, int) if port_raw else SAFETY_PORT,
            spec=spec,
            limit_overrides=overrides,
        )
