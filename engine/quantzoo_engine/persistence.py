"""What the engine keeps in ENGINE_STATE_DIR, each file written atomically: the state on SIGTERM, and the
kill-switch engagement it is held by (so a restart, even during an API-server outage, keeps the halt)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

STATE_FILE_NAME = "engine-state.json"
KILL_SWITCH_FILE_NAME = "kill-switch.json"


def write_state(state_dir: Path, state: dict[str, Any]) -> Path:
    return write_json(state_dir, STATE_FILE_NAME, state)


def write_json(state_dir: Path, name: str, data: Any, *, fsync: bool = True) -> Path:
    """Write to a temp file and rename, so a reader never sees half a file (even if we are killed).
    Without fsync the file survives a process restart, not a machine crash (cheap on the kill path)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(to_jsonable_python(data), fh, indent=2, sort_keys=True)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_json(state_dir: Path, name: str) -> Any | None:
    """The file's content, or None when there is none (or it cannot be read as JSON)."""
    try:
        return json.loads((state_dir / name).read_text())
    except (OSError, ValueError):
        return None
