"""Where a direct engine halt waits to be recorded in the TradingSystem: a small JSON file.

While the API server is down the safety service halts the engine directly and keeps the engagement as
*pending* until it can patch `spec.killSwitch`. Kept only in memory, a safety container restart in that
window would forget it, and the source of truth would never learn of the halt. The file lives on the
pod's emptyDir (it survives container restarts), is written atomically, and holds no secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from quantzoo_api.killswitch import KillSource
from quantzoo_api.types import KillSwitchMode

from quantzoo_safety.engagement import EngageIntent

log = logging.getLogger(__name__)


class PendingStore:
    """Save, load and clear the one pending engagement (a no-op without a path)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def save(self, intent: EngageIntent, engagement: str) -> None:
        """`engagement`: the direct halt's engagedAt (pushed to the engine, written into spec later)."""
        if self.path is None:
            return
        record = {**asdict(intent), "mode": str(intent.mode), "engagement": engagement}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pending-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> tuple[EngageIntent, str] | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            record = json.loads(self.path.read_text())
            intent = EngageIntent(
                reason=str(record["reason"]),
                operator=str(record["operator"]),
                source=KillSource.parse(record["source"], KillSource.SAFETY_API),
                close_positions=bool(record.get("close_positions", False)),
                mode=KillSwitchMode(record.get("mode", KillSwitchMode.HALT)),
            )
            return intent, str(record.get("engagement") or record["since"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable: keep the halt anyway (fail closed) rather than forget it.
            log.error("pending engagement file %s unreadable (%s): keeping a generic halt", self.path, exc)
            return EngageIntent(
                reason="pending direct halt (record unreadable)",
                operator="quantzoo-safety",
                source=KillSource.SAFETY_API,
            ), ""

    def clear(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
