"""The order the session runs its tests in where it is not pytest's collection order (tests/conftest.py's
hook applies it): the tests on the session's real node together, last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Item(Protocol):
    fixturenames: Sequence[str]

    def get_closest_marker(self, name: str) -> object | None: ...


ItemT = TypeVar("ItemT", bound=Item)

AFTER_HELM_RELEASE = "after_helm_release"


def real_node_tests_last(items: list[ItemT]) -> list[ItemT]:
    """The tests on the session's real node (they use `real_cluster`) run together, last (tests/zz_leaks
    moves itself after them): first those on the helm release (tests/pods, whose chart lifecycle test
    uninstalls it at its end), then those marked `after_helm_release` (Argo CD installs the same chart and
    CRD). Everything else, and each of the two groups, keeps its order."""
    real = [i for i in items if "real_cluster" in getattr(i, "fixturenames", ())]
    later = [i for i in real if i.get_closest_marker(AFTER_HELM_RELEASE)]
    first = [i for i in real if not i.get_closest_marker(AFTER_HELM_RELEASE)]
    chosen = {id(i) for i in real}
    return [i for i in items if id(i) not in chosen] + first + later
