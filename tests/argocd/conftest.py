"""Fixtures for the Argo CD tests: argo-cd's own health-check evaluation (tests/argocd/argocd_lua.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.argocd import argocd_lua


@pytest.fixture(scope="session")
def argocd_lua_bin() -> Path:
    """hack/argocd-lua built from argo-cd v2.14.21's util/lua (cached under ~/.cache/quantzoo)."""
    return argocd_lua.binary()
