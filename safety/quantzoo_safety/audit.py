"""The audit log: one JSON line per call of the safety API and per automatic trip.

Who (operator, authenticated or not), what (action, request summary), when (UTC), from where (client IP,
and X-Forwarded-For as given, unverified), and the result (HTTP code, what happened on the Kubernetes and
engine paths, the engagement, and the engine's ack: what was cancelled and closed). Written to the file
`SAFETY_AUDIT_LOG` (append-only, one object per line, flushed and fsynced per entry; rolled to `<file>.1`
past `max_bytes`, so the pod's emptyDir never fills) and to the log stream under the logger
`quantzoo_safety.audit`. The last entries are kept in memory for `/status`, read back from the file on
start, so a restarted safety container still shows (and keeps) its history.
Tokens never reach it: nothing passes a token in, and every known token value is scrubbed besides.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("quantzoo_safety.audit")

REDACTED = "[REDACTED]"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _scrub(value: Any, secrets_: Iterable[str]) -> Any:
    if isinstance(value, str):
        for s in secrets_:
            if s and s in value:
                value = value.replace(s, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets_) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets_) for v in value]
    return value


class AuditLog:
    def __init__(
        self,
        path: str | None,
        *,
        tradingsystem: str,
        secrets_provider: Callable[[], Iterable[str]] = list,
        keep: int = 50,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.path = path
        self.tradingsystem = tradingsystem
        self._secrets = secrets_provider
        self._recent: deque[dict[str, Any]] = deque(self._history(path, keep), maxlen=keep)
        self._lock = threading.Lock()
        self.max_bytes = max_bytes
        self.write_failures = 0

    @staticmethod
    def _history(path: str | None, keep: int) -> list[dict[str, Any]]:
        """The last `keep` entries of an existing audit file (a torn last line is skipped)."""
        if not path or not os.path.exists(path):
            return []
        out: list[dict[str, Any]] = []
        try:
            with open(path, encoding="utf-8") as fh:
                for line in deque(fh, maxlen=keep):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(line))
        except OSError as exc:
            log.error("audit file %s not readable: %s", path, type(exc).__name__)
        return out

    def _append(self, line: str) -> None:
        assert self.path is not None
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(self.path) + len(line) > self.max_bytes:
                os.replace(self.path, self.path + ".1")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def record(self, action: str, *, result: str, **fields: Any) -> dict[str, Any]:
        """Write one entry. Fields with value None are left out. Never raises."""
        entry: dict[str, Any] = {"ts": _now(), "tradingsystem": self.tradingsystem, "action": action}
        entry.update({k: v for k, v in fields.items() if v is not None})
        entry["result"] = result
        try:
            entry = _scrub(entry, list(self._secrets()))
        except Exception:  # the redaction source must never stop an audit line
            log.exception("audit redaction failed")
        line = json.dumps(entry, default=str, separators=(",", ":"))
        with self._lock:
            self._recent.append(entry)
            if self.path:
                try:
                    self._append(line)
                except OSError as exc:
                    self.write_failures += 1
                    log.error("audit file %s not writable: %s", self.path, type(exc).__name__)
        log.info("audit %s %s", action, result, extra={"audit": entry})
        return entry

    def recent(self, n: int = 10) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)[-n:]
