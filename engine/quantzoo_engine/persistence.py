"""What the engine leaves behind on SIGTERM: one JSON file in ENGINE_STATE_DIR, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

STATE_FILE_NAME = "engine-state.json"


def write_state(state_dir: Path, state: dict[str, Any]) -> Path:
    """Write to a temp file and rename, so a reader never sees half a file (even if we are killed)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / STATE_FILE_NAME
    fd, tmp = tempfile.mkstemp(prefix=".engine-state-", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(to_jsonable_python(state), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
