"""The one object holding the safety service's parts, reachable from a request as `get_context(request)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from quantzoo_safety.audit import AuditLog
    from quantzoo_safety.auth import TokenSource
    from quantzoo_safety.killswitch import KillSwitchService
    from quantzoo_safety.metrics import SafetyMetrics
    from quantzoo_safety.observe import Observer
    from quantzoo_safety.settings import Settings
    from quantzoo_safety.watchdog import Watchdog


@dataclass
class SafetyContext:
    settings: Settings
    tokens: TokenSource
    metrics: SafetyMetrics
    audit: AuditLog
    observer: Observer
    killswitch: KillSwitchService
    watchdog: Watchdog


def get_context(request: Request) -> SafetyContext:
    return request.app.state.safety
