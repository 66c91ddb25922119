"""Shared fixtures for the engine tests (helpers live in engine_helpers.py).

Everything runs in process with a manual clock; only test_engine_process.py starts real processes and
test_engine_alpaca.py a local Alpaca-compatible server.
"""

from __future__ import annotations

import pytest
from engine_helpers import Bars
from quantzoo_engine.clock import ManualClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bars() -> Bars:
    return Bars()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
