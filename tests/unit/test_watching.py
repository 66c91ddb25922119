"""The shared resumable watch loop (quantzoo_api/watching.py) with the real kubernetes.watch.Watch over a
scripted list/watch function: list, events, clean end (proof), resume from the last resourceVersion,
410 -> list again, a failure -> reported, backoff, list again; every call carries a client-side timeout.
The real API server (bookmarks, a black-holed connection) is in tests/faults/test_engine_partition.py.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from quantzoo_api.watching import Backoff, ResumableWatch, WatchTimeouts
from scripted_watch import Script, Stream, obj


class Seen:
    def __init__(self) -> None:
        self.log: list[str] = []

    def listed(self, items: list[dict[str, Any]]) -> None:
        self.log.append(f"listed {len(items)}")

    def event(self, event_type: str, o: dict[str, Any]) -> None:
        self.log.append(f"{event_type} {o['metadata']['resourceVersion']}")

    def unchanged(self) -> None:
        self.log.append("unchanged")

    def failed(self, reason: str) -> None:
        self.log.append(f"failed {reason}")


def run(answers: list[Any]) -> tuple[Seen, Script]:
    seen = Seen()
    script = Script(answers)
    watch = ResumableWatch(
        script, ("g", "v", "ns", "p"), seen, timeouts=WatchTimeouts(server_seconds=7), backoff=Backoff(0.001)
    )
    script.watch = watch
    watch.run()
    return seen, script


def test_list_watch_resume_and_relist_on_410() -> None:
    seen, script = run(
        [
            {"items": [obj("1")], "metadata": {"resourceVersion": "1"}},
            Stream([{"type": "MODIFIED", "object": obj("5")}]),  # then the server ends it cleanly
            Stream([{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}]),
            {"items": [obj("9")], "metadata": {"resourceVersion": "9"}},
        ]
    )
    assert seen.log[:4] == ["listed 1", "MODIFIED 5", "unchanged", "listed 1"]
    first_watch, resumed = script.calls[1], script.calls[2]
    assert first_watch["resource_version"] == "1"
    assert resumed["resource_version"] == "5"  # resumed where it left off, no list in between
    assert first_watch["allow_watch_bookmarks"] is True
    assert first_watch["timeout_seconds"] == 7
    assert first_watch["_request_timeout"] == (5.0, 12.0)  # the client gives up a silent watch
    assert script.calls[0]["_request_timeout"] == (5.0, 5.0)


def test_a_failure_is_reported_and_the_loop_lists_again() -> None:
    seen, _ = run(
        [
            {"items": [obj("1")], "metadata": {"resourceVersion": "1"}},
            TimeoutError("read timed out"),
            ApiException(status=503, reason="Service Unavailable"),
            {"items": [], "metadata": {"resourceVersion": "2"}},
        ]
    )
    assert seen.log[:4] == [
        "listed 1",
        "failed kubernetes API unreachable: TimeoutError",
        "failed kubernetes API: HTTP 503 Service Unavailable",
        "listed 0",
    ]
