"""The fuzz harness can fail: against a small app that misbehaves on purpose, the custom check catches a
refusal that changed state, and the built-in checks catch an undocumented status code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from fuzz_support import apply_auth, diff, load_schema, no_state_change_on_rejection, send
from pydantic import BaseModel


class Item(BaseModel):
    name: str


def leaky_app() -> FastAPI:
    app = FastAPI()
    app.state.count = 0

    @app.post("/items", responses={422: {"description": "refused"}})
    async def add(item: Item) -> dict[str, int]:
        app.state.count += 1  # the defect: counted before the refusal
        if item.name == "bad":
            raise HTTPException(422, "refused")
        return {"count": app.state.count}

    @app.get("/teapot")
    async def teapot() -> dict[str, str]:
        raise HTTPException(418, "undocumented")

    return app


@pytest.fixture
def leaky() -> Iterator[TestClient]:
    with TestClient(leaky_app()) as client:
        yield client


SCHEMA = load_schema(leaky_app().openapi())


def test_a_refusal_that_changed_state_fails_the_check(leaky: TestClient) -> None:
    case = SCHEMA["/items"]["POST"].Case(body={"name": "bad"}, media_type="application/json")
    before = {"count": leaky.app.state.count}  # type: ignore[attr-defined]
    response = send(leaky, case, "harness")
    after = {"count": leaky.app.state.count}  # type: ignore[attr-defined]
    assert response.status_code == 422
    with pytest.raises(schemathesis.errors.FailureGroup) as err:
        case.validate_response(response, additional_checks=[no_state_change_on_rejection(before, after)])
    assert "but the state changed" in str(err.value)
    assert ".count: 0 -> 1" in str(err.value)


def test_an_accepted_request_may_change_state(leaky: TestClient) -> None:
    case = SCHEMA["/items"]["POST"].Case(body={"name": "fine"}, media_type="application/json")
    response = send(leaky, case, "harness")
    assert response.status_code == 200
    case.validate_response(response, additional_checks=[no_state_change_on_rejection({"n": 0}, {"n": 1})])


def test_an_undocumented_status_fails(leaky: TestClient) -> None:
    case = SCHEMA["/teapot"]["GET"].Case()
    response = send(leaky, case, "harness")
    with pytest.raises(schemathesis.errors.FailureGroup, match="Undocumented status code"):
        case.validate_response(response)


def test_auth_variants_set_or_remove_the_header() -> None:
    case = SCHEMA["/teapot"]["GET"].Case(headers={"authorization": "generated"})
    apply_auth(case, "valid-token", "tok")
    assert case.headers == {"Authorization": "Bearer tok"}
    apply_auth(case, "wrong-token", "tok")
    assert case.headers == {"Authorization": "Bearer not-tok"}
    apply_auth(case, "no-token", "tok")
    assert not case.headers


def test_diff_names_what_changed() -> None:
    assert diff({"a": 1, "b": {"c": [1]}}, {"a": 1, "b": {"c": [1]}}) == []
    assert diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3, "d": 4}}) == [
        ".b.c: 2 -> 3",
        ".b.d: '<absent>' -> 4",
    ]
