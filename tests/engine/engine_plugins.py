"""Strategies that misbehave, installed the way a team installs theirs: a module plus a `*.dist-info`
with an `entry_points.txt` in a directory put on PYTHONPATH. importlib.metadata finds them exactly as it
finds a pip-installed package's entry points, without a pip install per test."""

from __future__ import annotations

from pathlib import Path

MODULE = "qz_test_strategies"

SOURCE = '''
"""Test strategies: one burns CPU, one blocks, one always raises."""
import time

from pydantic import Field

from quantzoo_engine.sdk import Strategy, StrategyParams


class BurnParams(StrategyParams):
    burn_seconds: float = Field(5.0, ge=0, le=60)


class CpuBurner(Strategy[BurnParams]):
    Params = BurnParams

    def on_bar(self, bar, ctx):
        end = time.perf_counter() + self.params.burn_seconds
        n = 0
        while time.perf_counter() < end:
            n += sum(i * i for i in range(1000))
        return ()


class Blocker(Strategy[BurnParams]):
    Params = BurnParams

    def on_bar(self, bar, ctx):
        time.sleep(self.params.burn_seconds)
        return ()


class AlwaysRaises(Strategy[StrategyParams]):
    def on_bar(self, bar, ctx):
        raise ZeroDivisionError("my signal divided by zero")
'''

ENTRY_POINTS = """[quantzoo.strategies]
cpuBurner = qz_test_strategies:CpuBurner
blocker = qz_test_strategies:Blocker
alwaysRaises = qz_test_strategies:AlwaysRaises
"""


def install_test_strategies(directory: Path) -> Path:
    """Writes the module and its dist-info into `directory`; put it on PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{MODULE}.py").write_text(SOURCE)
    info = directory / "qz_test_strategies-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qz-test-strategies\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return directory
