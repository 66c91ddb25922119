"""The leak scan reads what the whole session produced, so it must run last, whatever the collection
order or other plugins did: this moves its tests to the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mine = [i for i in items if HERE in Path(str(i.path)).resolve().parents]
    if mine:
        others = [i for i in items if i not in mine]
        items[:] = others + mine
