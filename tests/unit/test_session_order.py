"""The session's order: the real node's tests together, last, the helm release's before Argo CD's."""

from __future__ import annotations

from dataclasses import dataclass

from tests.session_order import AFTER_HELM_RELEASE, real_node_tests_last


@dataclass
class FakeItem:
    name: str
    fixturenames: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


def test_real_node_tests_go_last_release_first_each_group_in_order() -> None:
    items = [
        FakeItem("argocd_health"),
        FakeItem("argocd_gitops_1", ("real_cluster",), (AFTER_HELM_RELEASE,)),
        FakeItem("argocd_gitops_2", ("stage", "real_cluster"), (AFTER_HELM_RELEASE,)),
        FakeItem("chart"),
        FakeItem("pods_real", ("real_cluster", "release")),
        FakeItem("pods_chart_lifecycle", ("release", "real_cluster")),
        FakeItem("unit"),
    ]
    ordered = [i.name for i in real_node_tests_last(items)]
    assert ordered == [
        "argocd_health",
        "chart",
        "unit",
        "pods_real",
        "pods_chart_lifecycle",
        "argocd_gitops_1",
        "argocd_gitops_2",
    ]


def test_without_real_node_tests_nothing_moves() -> None:
    items = [FakeItem("a"), FakeItem("b", ("cluster",)), FakeItem("c")]
    assert real_node_tests_last(items) == items
