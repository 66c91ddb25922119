"""Constants and small helpers shared by the safety service's tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

TOKEN = "s3cr3t-safety-token-for-tests"
ENGINE_TOKEN = "engine-admin-token-for-tests"
ACTIVATE = {"reason": "Emergency stop - runaway trading", "close_positions": True, "operator": "alice"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def audit_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def engine_pod(
    name: str, endpoint: str, *, system: str = "demo", ready: bool = False, phase: str = "Running"
) -> dict[str, Any]:
    """An engine pod as the API server lists it; its admin endpoint (annotation) is a loopback process
    standing in for the pod IP. NotReady by default: a wedged engine out of the Service's endpoints."""
    from quantzoo_api.engine_pods import engine_pod_selector
    from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION

    labels = dict(kv.split("=", 1) for kv in engine_pod_selector(system).split(","))
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": labels,
            "annotations": {ADMIN_ENDPOINT_ANNOTATION: endpoint},
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
