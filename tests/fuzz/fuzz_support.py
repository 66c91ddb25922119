"""What both fuzz suites share: the bounded profile, the three auth variants, sending a schemathesis case
through a Starlette TestClient (so the app runs in process with its lifespan), and the custom check
"a rejected request changes no state".

A module of its own (not conftest.py) so the test modules import it by a name no other test folder uses.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import httpx
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

# CI runs a bounded, deterministic profile; `make fuzz` raises the count for a long run.
MAX_EXAMPLES = int(os.environ.get("QUANTZOO_FUZZ_MAX_EXAMPLES", "10"))

# derandomize: the same cases on every run (a CI failure reproduces locally); no deadline (a shared
# 2-core machine makes timing noise, and speed is the benchmarks' business); no example database, so
# a run does not depend on what an earlier run found.
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# The built-in checks we ask for, by name (schemathesis' config keys). The ones that re-send requests on
# their own (ignored_auth, use_after_free, ...) are off: our transport is the TestClient, not theirs.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"enabled": False, **{c: {"enabled": True} for c in CHECKS}}}
)

AUTH_VARIANTS = ("valid-token", "wrong-token", "no-token")

# Cases sent per suite and operation, for the summary line (tests/fuzz/conftest.py prints it).
SENT: Counter[tuple[str, str]] = Counter()
# Answers per suite, operation and status code, so the summary shows what the cases reached.
STATUSES: Counter[tuple[str, str, int]] = Counter()


def load_schema(raw: dict[str, Any]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(raw, config=CONFIG)


def apply_auth(case: schemathesis.Case, variant: str, token: str) -> None:
    """Set (or remove) the Authorization header the way the variant says."""
    for key in [k for k in case.headers or {} if k.lower() == "authorization"]:
        del case.headers[key]
    if variant == "valid-token":
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    elif variant == "wrong-token":
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer not-{token}"}


def send(client: TestClient, case: schemathesis.Case, suite: str) -> httpx.Response:
    """The case, serialized by schemathesis, sent through the app's TestClient."""
    kw = case.as_transport_kwargs(base_url=str(client.base_url))
    content: bytes | str | None = None
    if "json" in kw:
        content = json.dumps(kw["json"]).encode()
    elif "data" in kw and kw["data"] is not None:
        data = kw["data"]
        content = data if isinstance(data, bytes | str) else json.dumps(data).encode()
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    SENT[(suite, operation)] += 1
    response = client.request(
        kw["method"],
        kw["url"],
        params=kw.get("params"),
        headers=kw.get("headers"),
        cookies=kw.get("cookies"),
        content=content,
    )
    STATUSES[(suite, operation, response.status_code)] += 1
    return response


def diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ, as readable paths."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            out += diff(before.get(key, "<absent>"), after.get(key, "<absent>"), f"{path}.{key}")
        return out
    if before != after:
        return [f"{path or '.'}: {before!r} -> {after!r}"]
    return []


def no_state_change_on_rejection(before: dict[str, Any], after: dict[str, Any]) -> schemathesis.CheckFunction:
    """A schemathesis check: after a 4xx answer, the observable state is what it was before the call.

    `before`/`after` are snapshots taken around the call by the suite (it knows what its state is and
    what a rejection may legitimately touch, and leaves that out of the snapshot).
    """

    def state_unchanged_by_rejection(ctx: Any, response: schemathesis.Response, case: Any) -> bool | None:
        if not 400 <= response.status_code < 500:
            return None
        changes = diff(before, after)
        if changes:
            raise AssertionError(
                f"HTTP {response.status_code} (a rejection) but the state changed:"
                + "".join(f"\n  {c}" for c in changes)
            )
        return True

    return state_unchanged_by_rejection
