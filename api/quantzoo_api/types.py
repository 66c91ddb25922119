"""Pydantic models that mirror the TradingSystem CRD (crds/trading.quantzoo.io_tradingsystems.yaml).

The CRD's OpenAPI schema is what the API server enforces; these models are how Python reads a spec that
already passed it. tests/unit/test_types_match_crd.py keeps the two from drifting (field names, enums,
defaults).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TradingMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"
    DRY_RUN = "dryRun"


class BrokerKind(StrEnum):
    SIMULATED = "simulated"
    ALPACA = "alpaca"


class MarketDataKind(StrEnum):
    SIMULATED = "simulated"
    REPLAY = "replay"
    ALPACA = "alpaca"


class KillSwitchMode(StrEnum):
    HALT = "Halt"
    REDUCE_ONLY = "ReduceOnly"


class BrokerSpec(_Model):
    kind: BrokerKind = BrokerKind.SIMULATED
    # Name of a Secret in the TradingSystem's namespace with keys ALPACA_API_KEY and ALPACA_API_SECRET.
    credentials_secret: str | None = None
    # Override of the broker's base URL (a local Alpaca-compatible server in tests).
    base_url: str | None = None
    initial_cash: float = 1_000_000.0

    @model_validator(mode="after")
    def _alpaca_needs_credentials(self) -> BrokerSpec:
        if self.kind is BrokerKind.ALPACA and not self.credentials_secret:
            raise ValueError("broker.credentialsSecret is required when broker.kind is alpaca")
        return self


class StrategySpec(_Model):
    """Which strategy runs, and its parameters.

    `name` is looked up in the `quantzoo.strategies` entry-point group of the engine's image; `params` is
    free-form here and validated by that strategy's own pydantic model (quantzoo_engine.sdk.registry),
    so a team's strategy brings its own parameters without a change to the CRD.
    """

    name: str = Field("maCrossover", min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    params: dict[str, Any] = Field(default_factory=dict)


class MarketDataSpec(_Model):
    kind: MarketDataKind = MarketDataKind.SIMULATED
    seed: int = Field(42, ge=0, le=2**31 - 1)
    interval_seconds: float = Field(1.0, ge=0.01, le=3600)  # the CRD's CEL floor
    # For kind=replay: path of a CSV file of bars inside the engine container.
    replay_path: str | None = None
    base_url: str | None = None


class RiskLimits(_Model):
    max_order_notional: float = Field(100_000.0, gt=0, le=1e10)
    max_order_quantity: int = Field(1_000, ge=1, le=10_000_000)
    max_position_notional: float = Field(250_000.0, gt=0, le=1e11)
    max_gross_exposure: float = Field(1_000_000.0, gt=0, le=1e12)
    max_daily_drawdown_pct: float = Field(5.0, gt=0, le=100)
    price_collar_pct: float = Field(5.0, gt=0, le=50)
    max_orders_per_second: int = Field(10, ge=1, le=10_000)
    max_orders_per_minute: int = Field(300, ge=1, le=600_000)
    # Unset: three bar intervals of the feed, at least 10 s (TradingSystemSpec.stale_data_limit).
    stale_data_seconds: float | None = Field(None, gt=0, le=86_400)


class SessionSpec(_Model):
    """When the market is open (quantzoo_api.sessions): outside a session no order is sent, the strategy
    is not asked, and data is not stale."""

    # An exchange-calendars code (XNYS, XLON, CMES, ...) or "24/7". Unset: XNYS for the alpaca feed,
    # 24/7 for the simulated and replay feeds.
    calendar: str | None = Field(None, min_length=2, max_length=32, pattern=r"^[A-Za-z0-9_/]+$")
    allow_outside_session: bool = False


class ReleaseRecord(_Model):
    operator: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=1024)
    at: datetime | None = None
    engaged_at: datetime | None = None  # the engagement (spec.killSwitch.engagedAt) this release ends


class KillSwitchSpec(_Model):
    engaged: bool = False
    mode: KillSwitchMode = KillSwitchMode.HALT
    close_positions: bool = False
    reason: str | None = Field(None, max_length=1024)
    operator: str | None = Field(None, max_length=128)
    # Which path engaged it (a `quantzoo_api.killswitch.KillSource` from our paths; free text from others).
    source: str | None = Field(None, max_length=128)
    # Identifies the engagement: a release names it (release.engagedAt), see quantzoo_api.killswitch.
    engaged_at: datetime | None = None
    release: ReleaseRecord | None = None


class EnvVar(_Model):
    name: str = Field(max_length=256)
    value: str | None = Field(None, max_length=4096)
    value_from: dict[str, Any] | None = None


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(_Model):
    """A pod toleration, as core/v1 has it."""

    key: str | None = Field(None, max_length=317)
    operator: TolerationOperator | None = None
    value: str | None = Field(None, max_length=63)
    effect: TaintEffect | None = None
    toleration_seconds: int | None = None


class LocalObjectReference(_Model):
    name: str = Field(min_length=1, max_length=253)


AFFINITY_KEYS = ("nodeAffinity", "podAffinity", "podAntiAffinity")


class Placement(_Model):
    """Where and how an operand pod is scheduled: the pod fields a platform team sets.

    Per TradingSystem in spec.engine / spec.safety; the operator's chart-level defaults
    (values `operands.*`) fill each field the TradingSystem leaves unset (quantzoo_operator.placement).
    `affinity` is core/v1 Affinity (the CRD checks its three top-level keys; the API server checks the
    rest when the operator writes the pod template)."""

    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class_name: str | None = Field(None, max_length=253)

    @model_validator(mode="after")
    def _affinity_shape(self) -> Placement:
        for key, value in self.affinity.items():
            if key not in AFFINITY_KEYS:
                raise ValueError(f"affinity has only {', '.join(AFFINITY_KEYS)}, not {key!r}")
            if not isinstance(value, dict):
                raise ValueError(f"affinity.{key} must be an object")
        return self


class WorkloadSpec(Placement):
    # Unset: the operator's default, which the chart sets to the chart's own image.
    image: str | None = Field(None, max_length=512)
    # Unset: the operator's default (the chart's image.pullPolicy).
    image_pull_policy: str | None = None
    resources: dict[str, Any] = Field(default_factory=dict)
    env: list[EnvVar] = Field(default_factory=list)


class ExposeType(StrEnum):
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class SafetyExposeSpec(_Model):
    """The safety API on a NodePort or LoadBalancer Service, admitted only from `source_ranges`: a path to
    the kill switch that does not go through the API server (kubectl port-forward does)."""

    type: ExposeType = ExposeType.NODE_PORT
    node_port: int | None = Field(None, ge=30000, le=32767)
    source_ranges: list[str] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _cidrs(self) -> SafetyExposeSpec:
        for cidr in self.source_ranges:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"safety.expose.sourceRanges: {cidr!r} is not a CIDR") from None
        return self


class AutoTripSpec(_Model):
    enabled: bool = True
    heartbeat_timeout_seconds: float = Field(15.0, ge=1, le=3600)
    check_interval_seconds: float = Field(2.0, ge=0.1, le=600)  # the CRD's CEL floor
    max_rejects_per_minute: int = Field(50, ge=1, le=100_000)
    max_errors_per_minute: int = Field(20, ge=1, le=100_000)


class SafetySpec(WorkloadSpec):
    auto_trip: AutoTripSpec = AutoTripSpec()
    expose: SafetyExposeSpec | None = None


class AccountRef(_Model):
    """A TradingAccount in the TradingSystem's namespace (quantzoo_api.accounts)."""

    name: str = Field(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class TradingSystemSpec(_Model):
    account_ref: AccountRef | None = None
    mode: TradingMode = TradingMode.PAPER
    broker: BrokerSpec = BrokerSpec()
    symbols: list[str] = Field(default_factory=lambda: ["AAPL", "MSFT"], min_length=1, max_length=100)
    strategy: StrategySpec = StrategySpec()
    market_data: MarketDataSpec = MarketDataSpec()
    risk: RiskLimits = RiskLimits()
    session: SessionSpec = SessionSpec()
    kill_switch: KillSwitchSpec = KillSwitchSpec()
    engine: WorkloadSpec = WorkloadSpec()
    safety: SafetySpec = SafetySpec()

    @property
    def calendar(self) -> str:
        if self.session.calendar:
            return self.session.calendar
        return "XNYS" if self.market_data.kind is MarketDataKind.ALPACA else "24/7"

    @property
    def bar_interval_seconds(self) -> float:
        """Seconds between two bars of one symbol: Alpaca streams one-minute bars."""
        return 60.0 if self.market_data.kind is MarketDataKind.ALPACA else self.market_data.interval_seconds

    @property
    def stale_data_limit(self) -> float:
        """risk.staleDataSeconds, or by default three bar intervals (at least 10 s): data is stale when a
        bar is overdue, not merely because the feed's bars are a minute apart."""
        if self.risk.stale_data_seconds is not None:
            return self.risk.stale_data_seconds
        return max(10.0, 3 * self.bar_interval_seconds)

    @model_validator(mode="after")
    def _account_or_own_credentials(self) -> TradingSystemSpec:
        # The CRD's CEL rule, mirrored: a system trades with its account's credentials or its own.
        if self.account_ref is not None and self.broker.credentials_secret:
            raise ValueError("set either accountRef or broker.credentialsSecret, not both")
        return self

    @model_validator(mode="after")
    def _live_needs_real_broker(self) -> TradingSystemSpec:
        if self.mode is TradingMode.LIVE and self.broker.kind is not BrokerKind.ALPACA:
            raise ValueError("mode live needs a real broker (broker.kind: alpaca)")
        return self


def parse_spec(spec: dict[str, Any] | None) -> TradingSystemSpec:
    """A TradingSystemSpec from a raw `spec` dict as the API server returns it (camelCase)."""
    return TradingSystemSpec.model_validate(spec or {})
