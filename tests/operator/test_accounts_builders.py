"""The engine pod of a TradingSystem in a TradingAccount, built without a cluster: the account's name
and limits in the engine's environment (and nothing for the old form), the account's credentials
Secret mounted, the account's broker in the rendered config."""

from __future__ import annotations

import dataclasses
import json

from quantzoo_api.accounts import effective_spec, parse_account_spec
from quantzoo_api.types import parse_spec
from quantzoo_operator.builders import config_map, engine_statefulset
from quantzoo_operator.builders.common import System

ACCOUNT = parse_account_spec(
    {"broker": {"kind": "alpaca", "credentialsSecret": "acct-keys"}, "limits": {"maxOrdersPerMinute": 77}}
)


def in_account() -> System:
    plain = System("desk", "alpha", "uid-1", parse_spec({"accountRef": {"name": "shared"}}))
    return dataclasses.replace(
        plain, spec=effective_spec(plain.spec, ACCOUNT), account_name="shared", account_limits=ACCOUNT.limits
    )


def test_the_engine_env_names_the_account_and_its_limits() -> None:
    env = {e["name"]: e.get("value") for e in engine_statefulset.env(in_account())}
    assert env["QUANTZOO_ACCOUNT_NAME"] == "shared"
    assert json.loads(env["QUANTZOO_ACCOUNT_LIMITS"]) == {
        "maxGrossExposure": 5_000_000.0,
        "maxDailyLoss": 250_000.0,
        "maxOrdersPerMinute": 77,
    }
    assert {m.secret for m in engine_statefulset.secret_mounts(in_account())} >= {"acct-keys"}
    rendered = json.loads(config_map.render(in_account()))["spec"]
    assert rendered["broker"]["credentialsSecret"] == "acct-keys"
    assert rendered["accountRef"] == {"name": "shared"}


def test_the_old_form_has_no_account_env() -> None:
    old = System(
        "desk", "alpha", "uid-1", parse_spec({"broker": {"kind": "alpaca", "credentialsSecret": "own"}})
    )
    names = {e["name"] for e in engine_statefulset.env(old)}
    assert not names & {"QUANTZOO_ACCOUNT_NAME", "QUANTZOO_ACCOUNT_LIMITS"}
