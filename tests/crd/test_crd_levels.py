"""The kill switch of every level has one schema and one set of rules (issue #13): TradingAccount's and
TradingHalt's spec.killSwitch are copies of TradingSystem's, checked here; the API server enforces them
(release names the engagement, nothing but a release weakens it) and TradingHalt's scope rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from quantzoo_api.levels import HaltScope, KillLevel, parse_halt_spec

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def _spec_schema(name: str) -> dict:
    crd = yaml.safe_load((CRDS / f"trading.quantzoo.io_{name}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("name", ["tradingaccounts", "tradinghalts"])
def test_every_levels_kill_switch_has_the_trading_systems_schema_and_rules(name):
    assert (
        _spec_schema(name)["properties"]["killSwitch"]
        == _spec_schema("tradingsystems")["properties"]["killSwitch"]
    )


def test_account_broker_schema_is_the_trading_systems():
    assert (
        _spec_schema("tradingaccounts")["properties"]["broker"]
        == _spec_schema("tradingsystems")["properties"]["broker"]
    )


def test_a_halt_scope_covers_its_desk_or_the_firm():
    assert HaltScope(level=KillLevel.FIRM).covers("anything")
    desk = HaltScope(level=KillLevel.DESK, namespace="desk-a")
    assert desk.covers("desk-a")
    assert not desk.covers("desk-b")
    with pytest.raises(ValueError, match=r"scope\.namespace"):
        parse_halt_spec({"scope": {"level": "Desk"}})
    with pytest.raises(ValueError, match=r"scope\.namespace"):
        parse_halt_spec({"scope": {"level": "Firm", "namespace": "x"}})


def _apply(cluster, obj: dict, check: bool = True):
    return cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj), check=check)


def _halt(name: str, scope: dict, kill_switch: dict | None = None) -> dict:
    return {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingHalt",
        "metadata": {"name": name},
        "spec": {"scope": scope, "killSwitch": kill_switch or {}},
    }


def test_the_api_server_refuses_a_desk_without_namespace_and_a_firm_with_one(cluster):
    res = _apply(cluster, _halt("levels-bad-desk", {"level": "Desk"}), check=False)
    assert res.returncode != 0
    assert "required for level Desk" in res.stderr
    res = _apply(cluster, _halt("levels-bad-firm", {"level": "Firm", "namespace": "x"}), check=False)
    assert res.returncode != 0
    assert "not allowed for level Firm" in res.stderr


def test_a_halts_scope_is_immutable_and_its_release_names_the_engagement(cluster):
    engaged_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    name = "levels-desk"
    try:
        _apply(
            cluster,
            _halt(name, {"level": "Desk", "namespace": "desk-a"}, {"engaged": True, "engagedAt": engaged_at}),
        )
        res = _apply(
            cluster,
            _halt(name, {"level": "Desk", "namespace": "desk-b"}, {"engaged": True, "engagedAt": engaged_at}),
            check=False,
        )
        assert res.returncode != 0
        assert "scope is immutable" in res.stderr
        # A GitOps revert (engaged: false without a release record) is refused, as on a TradingSystem.
        res = _apply(
            cluster, _halt(name, {"level": "Desk", "namespace": "desk-a"}, {"engaged": False}), check=False
        )
        assert res.returncode != 0
        assert "naming the engagement it ends" in res.stderr
        release = {"operator": "alice", "reason": "resolved", "engagedAt": engaged_at}
        _apply(
            cluster,
            _halt(name, {"level": "Desk", "namespace": "desk-a"}, {"engaged": False, "release": release}),
        )
    finally:
        cluster.kubectl("delete", "tradinghalt", name, "--ignore-not-found", check=False)


def test_an_accounts_kill_switch_refuses_a_revert(cluster, namespace):
    engaged_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    account = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingAccount",
        "metadata": {"name": "shared", "namespace": namespace},
        "spec": {"killSwitch": {"engaged": True, "engagedAt": engaged_at}},
    }
    _apply(cluster, account)
    account["spec"]["killSwitch"] = {"engaged": False}
    res = _apply(cluster, account, check=False)
    assert res.returncode != 0
    assert "naming the engagement it ends" in res.stderr
