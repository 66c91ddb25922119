"""A scripted stand-in for a kubernetes list/watch call, for the watch-loop unit tests: each call takes the
next answer (a list body, a `Stream` of watch events that ends cleanly, or an exception to raise); when the
script runs out, the watch under test is stopped. Real kubernetes.watch.Watch parses the streams."""

from __future__ import annotations

import json
from typing import Any


class Stream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.lines = [json.dumps(e).encode() + b"\n" for e in events]
        self.status = 200

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        yield from self.lines

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


def obj(rv: str) -> dict[str, Any]:
    return {"metadata": {"name": "demo", "resourceVersion": rv}, "spec": {}}


class Script:
    """Answers the list and watch calls in order; records their arguments."""

    def __init__(self, answers: list[Any], watch: Any | None = None) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []
        self.args: list[tuple[Any, ...]] = []
        self.watch = watch

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        self.args.append(args)
        if not self.answers:
            assert self.watch is not None
            self.watch.stop()
            return Stream([])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
