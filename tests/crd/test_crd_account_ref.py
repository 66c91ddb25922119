"""spec.accountRef of a TradingSystem is immutable (issue #13): a running strategy's orders and positions
belong to its account, and its engine reads the account once, at start. To move a strategy to another
account, delete the TradingSystem and create it again naming the new one. Against the real API server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.faults.watching_engine import SPEC

IMMUTABLE = "spec.accountRef is immutable"


def _system(namespace: str, name: str, account: str | None) -> dict:
    spec = dict(SPEC) | ({"accountRef": {"name": account}} if account else {})
    return {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _patch(cluster, namespace: str, name: str, spec: dict, check: bool = False):
    return cluster.kubectl(
        "-n", namespace, "patch", "tradingsystem", name, "--type=merge", "-p", json.dumps({"spec": spec}),
        check=check,
    )  # fmt: skip


def test_the_api_server_refuses_to_move_a_system_to_another_account(cluster, namespace):
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_system(namespace, "moved", "main")))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_system(namespace, "own", None)))
    for name, change in (
        ("moved", {"accountRef": {"name": "other"}}),
        ("moved", {"accountRef": None}),
        ("own", {"accountRef": {"name": "main"}}),
    ):
        res = _patch(cluster, namespace, name, change)
        assert res.returncode != 0, (name, change)
        assert IMMUTABLE in res.stderr
        assert "delete the TradingSystem and create it again" in res.stderr
    # Anything else still changes, and an engage alone is never refused.
    _patch(cluster, namespace, "moved", {"symbols": ["MSFT"]}, check=True)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _patch(cluster, namespace, "moved", {"killSwitch": {"engaged": True, "engagedAt": now}}, check=True)


def test_an_engage_in_the_same_patch_as_an_account_change_is_never_refused(cluster, namespace):
    """The never-refused engage wins over the immutability: the system is halted (its engine still on the
    account it started with) and a release is a deliberate act as ever."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_system(namespace, "halted", "main")))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    engage = {"accountRef": {"name": "other"}, "killSwitch": {"engaged": True, "engagedAt": now}}
    _patch(cluster, namespace, "halted", engage, check=True)
    obj = json.loads(cluster.kubectl("-n", namespace, "get", "tradingsystem", "halted", "-o", "json").stdout)
    assert obj["spec"]["killSwitch"]["engaged"] is True
