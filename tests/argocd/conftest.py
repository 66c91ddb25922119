"""Fixtures for the Argo CD tests: a real Lua 5.1 runtime (lupa) that runs a health.lua like Argo CD does.

Argo CD runs health scripts in gopher-lua (Lua 5.1) with the global `obj` set to the live object and only the
base, table, string and math libraries; the runtime here is Lua 5.1 with io, os, debug, require and file
loading removed, so a script that leans on anything else fails here too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = REPO / "argocd" / "resource_customizations"

_SANDBOX = "io, os, debug, require, dofile, loadfile, load, loadstring, package, module = nil"


@pytest.fixture(scope="session")
def run_health():
    """run_health(script_text, obj_dict) -> {"status": ..., "message": ...}"""
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa (with its bundled Lua 5.1) is not installed")

    def _run(script: str, obj: dict) -> dict:
        lua = lua51.LuaRuntime(unpack_returned_tuples=True)
        assert lua.eval("_VERSION") == "Lua 5.1"
        lua.execute(_SANDBOX)
        lua.globals().obj = lua.table_from(obj, recursive=True)
        result = lua.execute(script)
        assert result is not None, "health.lua returned nothing"
        return {key: result[key] for key in ("status", "message") if result[key] is not None}

    return _run
