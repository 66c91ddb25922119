"""The operator's TradingSystem watch (quantzoo_operator/killswitch/watching.py) is a thin adapter on the
shared loop (quantzoo_api.watching.ResumableWatch): against a scripted list/watch call parsed by the real
kubernetes.watch.Watch, it resumes from the last resourceVersion it saw and lists again (a new SYNC) on
410 Gone, in one namespace or in all. The real API server is in tests/operator and tests/faults."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_operator.killswitch.watching import TradingSystemWatch
from scripted_watch import Script, Stream, obj


class Objects:
    """Stands in for CustomObjectsApi: both list calls answer from the script."""

    def __init__(self, script: Script) -> None:
        self.list_namespaced_custom_object = script
        self.list_cluster_custom_object = script


def watch(
    answers: list[Any], namespace: str | None
) -> tuple[list[tuple[str, Any]], Script, TradingSystemWatch]:
    emitted: list[tuple[str, Any]] = []
    script = Script(answers)
    w = TradingSystemWatch(
        Objects(script), namespace, lambda kind, payload, _: emitted.append((kind, payload)), server_timeout=7
    )
    w.loop.backoff.initial = 0.001
    script.watch = w
    w.run()  # in this thread: returns when the script runs out
    return emitted, script, w


def rv_of(payload: Any) -> Any:
    if isinstance(payload, list):
        return [rv_of(p) for p in payload]
    return payload["metadata"]["resourceVersion"]


def test_resumes_from_the_last_resource_version_and_lists_again_on_410() -> None:
    emitted, script, w = watch(
        [
            {"items": [obj("1")], "metadata": {"resourceVersion": "1"}},
            Stream([{"type": "MODIFIED", "object": obj("5")}]),  # then the server ends it cleanly
            Stream([{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "8"}}}]),
            Stream([{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}]),
            {"items": [obj("9")], "metadata": {"resourceVersion": "9"}},
        ],
        "trading",
    )
    assert [(kind, rv_of(p)) for kind, p in emitted] == [("SYNC", ["1"]), ("MODIFIED", "5"), ("SYNC", ["9"])]
    watches = [c for c in script.calls if "resource_version" in c]
    assert [c["resource_version"] for c in watches] == ["1", "5", "8", "9"]  # resumed, then after the re-list
    assert [len(a) for a in script.args[:2]] == [4, 4]  # the namespaced call
    assert script.args[0] == (GROUP, VERSION, "trading", PLURAL)
    assert watches[0]["allow_watch_bookmarks"] is True
    assert watches[0]["timeout_seconds"] == 7
    assert watches[0]["_request_timeout"] == (5.0, 22.0)  # the client gives up a silent watch
    assert w.synced.is_set()


def test_all_namespaces_and_a_failure_lists_again() -> None:
    emitted, script, _ = watch(
        [
            {"items": [], "metadata": {"resourceVersion": "3"}},
            ApiException(status=503, reason="Service Unavailable"),
            {"items": [obj("4")], "metadata": {"resourceVersion": "4"}},
        ],
        None,
    )
    assert script.args[0] == (GROUP, VERSION, PLURAL)
    assert [(kind, rv_of(p)) for kind, p in emitted] == [("SYNC", []), ("SYNC", ["4"])]


def test_a_closed_event_loop_stops_the_watch() -> None:
    script = Script([{"items": [], "metadata": {"resourceVersion": "1"}}, Stream([])])

    def gone(*_: Any) -> None:
        raise RuntimeError("Event loop is closed")

    w = TradingSystemWatch(Objects(script), "trading", gone)
    script.watch = w
    w.run()
    assert w.loop.stopped
    assert len(script.calls) == 1  # no watch after the loop went away
