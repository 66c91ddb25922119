"""Runs Argo CD health checks with argo-cd's own Lua code path (hack/argocd-lua, built from argo-cd v2's
util/lua and util/settings by hack/build-argocd.sh): gopher-lua with only the base, table, package and safe os
libraries unless useOpenLibs is set, exactly as the application controller evaluates a health check."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from hack.devcluster.argocd import VERSION

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "build-argocd.sh"


def binary() -> Path:
    """The cached argocd-lua for this source (the script builds it once if it is missing: a few minutes)."""
    out = subprocess.run(
        ["bash", str(BUILD)],
        env={**os.environ, "ONLY": "lua", "ARGOCD_VERSION": VERSION},
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "argocd-lua"


def _run(exe: Path, request: dict[str, Any]) -> list[dict[str, str]]:
    out = subprocess.run(
        [str(exe)], input=json.dumps(request), check=True, capture_output=True, text=True, timeout=60
    )
    return json.loads(out.stdout)


def execute_health_lua(
    exe: Path, script: str, objects: list[dict], *, use_open_libs: bool = False
) -> list[dict[str, str]]:
    """util/lua VM{UseOpenLibs}.ExecuteHealthLua(obj, script) for each object: status/message, or error."""
    return _run(exe, {"script": script, "useOpenLibs": use_open_libs, "objects": objects})


def health_from_configmap(exe: Path, configmap: dict, objects: list[dict]) -> list[dict[str, str]]:
    """What the application controller reports: argocd-cm read by argo-cd's settings manager, then
    ResourceHealthOverrides.GetResourceHealth (so `useOpenLibs.<group_kind>` keys count as in Argo CD)."""
    return _run(exe, {"configMap": configmap, "objects": objects})
