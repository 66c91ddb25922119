"""The kill-switch contract between the operator, the engine and the safety service (design.md).

One source of truth is `spec.killSwitch` of the TradingSystem. This module holds the payloads every path
uses and the merge patches that engage and release it, so the wording of the contract lives once.

Engagement identity (issue #15):
- `spec.killSwitch.engagedAt` identifies an engagement. Every engage from our paths sets a fresh one and
  clears `release`; a repeated or stronger engage while engaged keeps it (`plan_engage`).
- A release names the engagement it ends (`release.engagedAt`) and clears the incident fields, so the
  next plain engage is a Halt with the new who and why (`release_patch`). The CRD refuses a release that
  names another engagement, so an older release record cannot be replayed.
- Nothing but a release weakens an engaged switch: `plan_engage` sends the stronger of current and asked.
- An engage is never refused: what our clients send is shortened, normalised and defaulted here.
- `KillSwitchCommand.engagement` carries the engagement as `engagement_id()` spells it (RFC 3339, ms, Z),
  so every path compares the same string whichever way it parsed the timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from quantzoo_api.levels import HOLDER_PATTERN, MAX_HOLDER, KillLevel, holder_level
from quantzoo_api.types import KillSwitchMode, KillSwitchSpec

# Engine admin endpoint that the operator and the safety service push kill-switch commands to.
ENGINE_KILL_SWITCH_PATH = "/admin/kill-switch"
# Env var holding the engine admin token (from the `<name>-engine-admin` Secret). Not the safety token.
ENGINE_ADMIN_TOKEN_ENV = "ENGINE_ADMIN_TOKEN"  # noqa: S105 - an env var name
SAFETY_API_TOKEN_ENV = "SAFETY_API_TOKEN"  # noqa: S105 - an env var name
# A real process standing in for a simulated (kwok) pod is reached at this annotation's URL.
ADMIN_ENDPOINT_ANNOTATION = "trading.quantzoo.io/admin-endpoint"

# The CRD's bounds; our clients shorten to them rather than have an engage refused.
MAX_REASON = 1024
MAX_OPERATOR = 128
MAX_ENGAGEMENT = 64
DEFAULT_OPERATOR = "unknown"
DEFAULT_REASON = "no reason given"


class KillSource(StrEnum):
    """Which path engaged the switch or delivered a command (one vocabulary for every component)."""

    KUBECTL = "kubectl"  # the kubectl plugin
    SAFETY_API = "safety-api"  # the runbook's POST /kill-switch/activate
    WATCHDOG = "auto"  # the safety service's automatic trips
    OPERATOR = "operator"  # the operator's push of spec.killSwitch
    FINALIZER = "operator:finalizer"  # the operator's halt before a TradingSystem's workloads go
    TOMBSTONE = "operator:tombstone"  # re-engaged on create: the TradingSystem was deleted while engaged
    ENGINE_WATCH = "kubernetes-watch"  # the engine's own watch of its TradingSystem
    CONFIG = "config"  # the engine's config file (an engine run without Kubernetes)
    OTHER = "other"  # free text written by hand into spec.killSwitch.source

    @classmethod
    def parse(cls, value: object, default: KillSource | None = None) -> KillSource:
        """A source from anything (a hand-written spec may say anything): unknown text is OTHER."""
        if isinstance(value, KillSource):
            return value
        if value is None or value == "":
            return default or cls.OTHER
        try:
            return cls(str(value))
        except ValueError:
            return cls.OTHER


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"


# -- normalising what clients send (an engage is never refused) -----------------------------------
def clip(text: object, limit: int, default: str) -> str:
    """`text` as a non-empty string of at most `limit` characters (`default` when empty)."""
    value = "" if text is None else str(text).strip()
    return (value or default)[:limit]


def normalise_mode(value: object) -> KillSwitchMode:
    """`halt`, `HALT`, `reduce-only`, `reduce_only` ... as the CRD spells them; unknown is Halt (the
    stronger mode: a typo in an engage must not weaken it, nor refuse it)."""
    if isinstance(value, KillSwitchMode):
        return value
    key = str(value or "").replace("-", "").replace("_", "").replace(" ", "").lower()
    return KillSwitchMode.REDUCE_ONLY if key == "reduceonly" else KillSwitchMode.HALT


def stronger_mode(a: KillSwitchMode | str | None, b: KillSwitchMode | str | None) -> KillSwitchMode:
    """Halt is stronger than ReduceOnly (None is the CRD's default, Halt)."""
    modes = {normalise_mode(a or KillSwitchMode.HALT), normalise_mode(b or KillSwitchMode.HALT)}
    return KillSwitchMode.HALT if KillSwitchMode.HALT in modes else KillSwitchMode.REDUCE_ONLY


def engagement_id(value: datetime | str | None) -> str | None:
    """The canonical spelling of an engagement (`engagedAt`): RFC 3339, UTC, milliseconds, `Z`."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value[:MAX_ENGAGEMENT]
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_engagement() -> str:
    """A fresh engagement id (now)."""
    return engagement_id(datetime.now(UTC)) or ""


# -- the payloads ---------------------------------------------------------------------------------
class KillSwitchCommand(BaseModel):
    """What the operator (or the safety service, when the API server is down) pushes to an engine."""

    model_config = ConfigDict(extra="forbid")

    engaged: bool
    mode: KillSwitchMode = KillSwitchMode.HALT
    close_positions: bool = False
    reason: str | None = Field(None, max_length=1024)
    operator: str | None = Field(None, max_length=128)
    # Our paths send a KillSource; text written by hand into spec.killSwitch.source reads as OTHER (the
    # schema says string: a free-text source is accepted, not refused).
    source: Annotated[
        KillSource, WithJsonSchema({"type": "string", "maxLength": 128, "default": str(KillSource.OPERATOR)})
    ] = KillSource.OPERATOR
    # metadata.generation of the TradingSystem the command was read from; an engine ignores a release
    # older than the newest engage it has seen, so a delayed push cannot undo a newer kill.
    generation: int | None = Field(None, ge=0)
    # engagedAt of the engagement an engage starts or a release ends
    engagement: str | None = Field(None, max_length=64)
    issued_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Which level's latch the command is for (issue #13), and which object holds it
    # (quantzoo_api.levels.holder_of); None: the engine's own TradingSystem (System level).
    level: KillLevel = KillLevel.SYSTEM
    holder: str | None = Field(None, max_length=MAX_HOLDER, pattern=HOLDER_PATTERN)

    @field_validator("source", mode="before")
    @classmethod
    def _any_source(cls, value: object) -> KillSource:
        if not isinstance(value, str) or len(value) > MAX_OPERATOR:
            raise ValueError("source: a string of at most 128 characters")
        return KillSource.parse(value, KillSource.OPERATOR)

    @model_validator(mode="after")
    def _holder_is_of_the_level(self) -> KillSwitchCommand:
        if self.holder is not None and holder_level(self.holder) is not self.level:
            raise ValueError(f"holder {self.holder!r} is not of level {self.level}")
        if self.holder is None and self.level is not KillLevel.SYSTEM:
            raise ValueError(f"a level {self.level} command names its holder")
        return self


class KillSwitchAck(BaseModel):
    """The engine's answer once the command is in force (new orders blocked before it answers).

    `cancelled_orders` / `closed_positions` are what the ENGAGEMENT did, whichever path got there first
    (a repeated engage returns its engagement's totals), so status and the audit report the real work."""

    pod: str
    engaged: bool
    trading_state: TradingState
    generation: int | None = None
    engagement: str | None = None  # the engagement holding the engine (None when released)
    acknowledged_at: datetime
    cancelled_orders: list[str] = Field(default_factory=list)
    closed_positions: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    # Orders still working at the broker after the clean-up (cancels refused or timed out): the engine
    # keeps retrying them while engaged; the operator re-pushes until this is empty.
    working_orders: list[str] = Field(default_factory=list)


def to_command(
    spec: KillSwitchSpec,
    *,
    generation: int | None,
    source: KillSource = KillSource.OPERATOR,
    level: KillLevel = KillLevel.SYSTEM,
    holder: str | None = None,
) -> KillSwitchCommand:
    """The command that the `spec.killSwitch` of a level's object stands for, delivered by `source`
    (a TradingSystem's own by default; a TradingAccount's or TradingHalt's with `level`/`holder`)."""
    at = {"level": level, "holder": holder}
    if spec.engaged:
        return KillSwitchCommand(
            engaged=True,
            mode=spec.mode,
            close_positions=spec.close_positions,
            reason=clip(spec.reason, MAX_REASON, "kill switch engaged"),
            operator=clip(spec.operator, MAX_OPERATOR, DEFAULT_OPERATOR),
            source=source,
            generation=generation,
            engagement=engagement_id(spec.engaged_at),
            **at,
        )
    release = spec.release
    return KillSwitchCommand(
        engaged=False,
        reason=clip(release.reason if release else None, MAX_REASON, "kill switch released"),
        operator=clip(release.operator if release else None, MAX_OPERATOR, DEFAULT_OPERATOR),
        source=source,
        generation=generation,
        engagement=engagement_id(release.engaged_at) if release else None,
        **at,
    )


def _text(value: object, name: str) -> str:
    """A string (a missing field takes its default): a number, null or object where text belongs is
    malformed, not sloppy."""
    if isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a string")


_MODE_SCHEMA = {"type": "string", "default": "Halt", "examples": ["Halt", "ReduceOnly"]}


class ActivateRequest(BaseModel):
    """Body of the runbook's `POST /kill-switch/activate`. An engage is never refused: who and why
    default, a long reason is shortened, the mode's case is normalised, unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    reason: str = DEFAULT_REASON
    # strict: lax parsing would read "0", "off" or 1 as a decision about the trader's positions.
    close_positions: bool = Field(False, strict=True)
    operator: str = DEFAULT_OPERATOR
    # Any spelling: Halt, halt, reduce-only ...; text that names no mode is Halt (the stronger).
    mode: Annotated[KillSwitchMode, WithJsonSchema(_MODE_SCHEMA)] = KillSwitchMode.HALT

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: object) -> str:
        return clip(_text(value, "reason"), MAX_REASON, DEFAULT_REASON)

    @field_validator("operator", mode="before")
    @classmethod
    def _operator(cls, value: object) -> str:
        return clip(_text(value, "operator"), MAX_OPERATOR, DEFAULT_OPERATOR)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> KillSwitchMode:
        return normalise_mode(_text(value, "mode"))


class DeactivateRequest(BaseModel):
    """Body of the runbook's `POST /kill-switch/deactivate`. A release is deliberate: who is required."""

    model_config = ConfigDict(extra="forbid")

    operator: str = Field(min_length=1, max_length=128)
    reason: str = Field("released via safety API", min_length=1, max_length=1024)


# -- the merge patches ----------------------------------------------------------------------------
def kill_switch_of(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """`spec.killSwitch` of a TradingSystem object as stored (camelCase; empty dict when absent)."""
    return dict(((obj or {}).get("spec") or {}).get("killSwitch") or {})


def engage_patch(
    *,
    reason: object = None,
    operator: object = None,
    source: KillSource | str = KillSource.KUBECTL,
    close_positions: bool = False,
    mode: KillSwitchMode | str = KillSwitchMode.HALT,
    at: str | None = None,
) -> dict[str, Any]:
    """JSON merge patch that starts a NEW engagement: fresh `engagedAt`, the old release cleared.
    Use `plan_engage` when the switch may already be engaged (it keeps that engagement)."""
    return {
        "spec": {
            "killSwitch": {
                "engaged": True,
                "mode": str(normalise_mode(mode)),
                "closePositions": bool(close_positions),
                "reason": clip(reason, MAX_REASON, DEFAULT_REASON),
                "operator": clip(operator, MAX_OPERATOR, DEFAULT_OPERATOR),
                # Our paths pass a KillSource; the CRD allows any text (a hand-written engage), kept as given.
                "source": clip(source, MAX_OPERATOR, str(KillSource.OTHER)),
                "engagedAt": engagement_id(at) or now_engagement(),
                "release": None,
            }
        }
    }


def plan_engage(
    current: Mapping[str, Any] | None,
    *,
    reason: object = None,
    operator: object = None,
    source: KillSource | str = KillSource.KUBECTL,
    close_positions: bool = False,
    mode: KillSwitchMode | str = KillSwitchMode.HALT,
    at: str | None = None,
) -> dict[str, Any] | None:
    """The merge patch an engage sends, given the current `spec.killSwitch` (as stored): a new engagement
    when released; when engaged, only what makes it stronger (ReduceOnly -> Halt, closePositions -> true),
    keeping the engagement, its engagedAt and its who/why; None when nothing would get stronger."""
    ks = current or {}
    if not ks.get("engaged"):
        return engage_patch(
            reason=reason, operator=operator, source=source, close_positions=close_positions, mode=mode, at=at
        )
    escalate: dict[str, Any] = {}
    if close_positions and not ks.get("closePositions"):
        escalate["closePositions"] = True
    current_mode = normalise_mode(ks.get("mode") or KillSwitchMode.HALT)
    if stronger_mode(current_mode, mode) is not current_mode:
        escalate["mode"] = str(KillSwitchMode.HALT)
    if not ks.get("engagedAt"):
        # A hand-written engage without an engagement id: give it one, so a release can name it.
        escalate["engagedAt"] = engagement_id(at) or now_engagement()
        escalate["release"] = None
    return {"spec": {"killSwitch": escalate}} if escalate else None


def release_patch(
    *, operator: object, reason: object, engagement: str | None, at: str | None = None
) -> dict[str, Any]:
    """JSON merge patch that releases the engagement `engagement` (its engagedAt; None only for a switch
    engaged without one). Clears the incident fields, so the CRD defaults apply to the next engage."""
    record: dict[str, Any] = {
        "operator": clip(operator, MAX_OPERATOR, DEFAULT_OPERATOR),
        "reason": clip(reason, MAX_REASON, "released"),
        "at": engagement_id(at) or now_engagement(),
    }
    if engagement:
        record["engagedAt"] = engagement
    return {
        "spec": {
            "killSwitch": {
                "engaged": False,
                "mode": None,
                "closePositions": None,
                "reason": None,
                "operator": None,
                "source": None,
                "engagedAt": None,
                "release": record,
            }
        }
    }


def release_patch_for(
    current: Mapping[str, Any] | None, *, operator: object, reason: object, at: str | None = None
) -> dict[str, Any]:
    """`release_patch` naming the engagement of the current `spec.killSwitch` (as stored)."""
    engaged_at = (current or {}).get("engagedAt")
    return release_patch(operator=operator, reason=reason, engagement=engaged_at, at=at)
