"""The TradingSystem CRD against a real kube-apiserver: defaults, schema and CEL refusals with messages
a person understands, the kill-switch release rule, and printer columns."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _ts(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": spec if spec is not None else {"symbols": ["AAPL"]},
    }


@pytest.fixture
def crs(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


def _create(crs: client.CustomObjectsApi, ns: str, body: dict, dry_run: bool = False) -> dict:
    kwargs = {"dry_run": "All"} if dry_run else {}
    return crs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, **kwargs)


def _refusal(crs: client.CustomObjectsApi, ns: str, body: dict) -> str:
    with pytest.raises(client.ApiException) as exc:
        _create(crs, ns, body, dry_run=True)
    assert exc.value.status == 422, exc.value.body
    return json.loads(exc.value.body)["message"]


@pytest.mark.parametrize("example", ["tradingsystem-minimal.yaml", "tradingsystem-full.yaml"])
def test_examples_are_accepted(crs, namespace, example):
    body = yaml.safe_load((EXAMPLES / example).read_text())
    created = _create(crs, namespace, body)
    assert created["metadata"]["name"] == body["metadata"]["name"]


def test_minimal_resource_gets_defaults(crs, namespace):
    created = _create(crs, namespace, _ts("defaults", {"symbols": ["AAPL"]}))
    spec = created["spec"]
    assert spec["mode"] == "paper"
    assert spec["broker"]["kind"] == "simulated"
    assert spec["strategy"] == {"name": "maCrossover", "params": {}}
    assert spec["marketData"]["kind"] == "simulated"
    assert spec["risk"]["maxOrderNotional"] == 100000
    assert "staleDataSeconds" not in spec["risk"]  # by default three bar intervals of the feed
    assert spec["session"] == {"allowOutsideSession": False}
    assert spec["killSwitch"] == {"engaged": False, "mode": "Halt", "closePositions": False}
    assert spec["safety"]["autoTrip"]["heartbeatTimeoutSeconds"] == 15


def test_empty_spec_gets_default_symbols(crs, namespace):
    created = _create(crs, namespace, _ts("empty", {}))
    assert created["spec"]["symbols"] == ["AAPL", "MSFT"]


def _with(path: str, value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"symbols": ["AAPL"]}
    node = spec
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return spec


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-mode", _with("mode", "yolo"), 'spec.mode: Unsupported value: "yolo"'),
    ("live-on-simulated", _with("mode", "live"), "mode live needs a real broker"),
    (
        "alpaca-without-secret",
        _with("broker.kind", "alpaca"),
        "broker.credentialsSecret is required when broker.kind is alpaca",
    ),
    ("unknown-broker", _with("broker.kind", "ibkr"), 'spec.broker.kind: Unsupported value: "ibkr"'),
    (
        "no-symbols",
        {"symbols": []},
        "spec.symbols: Invalid value: 0: spec.symbols in body should have at least 1 items",
    ),
    ("lowercase-symbol", {"symbols": ["aapl"]}, 'spec.symbols[0]: Invalid value: "aapl"'),
    ("duplicate-symbols", {"symbols": ["AAPL", "AAPL"]}, 'spec.symbols[1]: Duplicate value: "AAPL"'),
    (
        "negative-notional",
        _with("risk.maxOrderNotional", -5),
        "spec.risk.maxOrderNotional: Invalid value: -5",
    ),
    ("zero-quantity", _with("risk.maxOrderQuantity", 0), "spec.risk.maxOrderQuantity: Invalid value: 0"),
    ("drawdown-over-100", _with("risk.maxDailyDrawdownPct", 150), "should be less than or equal to 100"),
    ("collar-too-wide", _with("risk.priceCollarPct", 90), "spec.risk.priceCollarPct: Invalid value: 90"),
    (
        "rate-minute-below-second",
        _with("risk", {"maxOrdersPerSecond": 50, "maxOrdersPerMinute": 10}),
        "risk.maxOrdersPerMinute must be at least risk.maxOrdersPerSecond",
    ),
    (
        "position-above-gross",
        _with("risk", {"maxPositionNotional": 5e6, "maxGrossExposure": 1e6}),
        "risk.maxPositionNotional cannot exceed risk.maxGrossExposure",
    ),
    (
        "strategy-name-not-a-name",
        _with("strategy.name", "rm -rf"),
        'spec.strategy.name: Invalid value: "rm -rf"',
    ),
    ("kill-mode", _with("killSwitch.mode", "Pause"), 'spec.killSwitch.mode: Unsupported value: "Pause"'),
    (
        "string-number",
        _with("risk.maxOrderQuantity", "lots"),
        'spec.risk.maxOrderQuantity: Invalid value: "string"',
    ),
    (
        "replay-without-path",
        _with("marketData.kind", "replay"),
        "marketData.replayPath is required when marketData.kind is replay",
    ),
    (
        "release-without-who",
        _with("killSwitch.release", {"reason": "x"}),
        "spec.killSwitch.release.operator: Required value",
    ),
    (
        "bad-secret-name",
        _with("broker", {"kind": "alpaca", "credentialsSecret": "Bad_Name"}),
        "spec.broker.credentialsSecret",
    ),
    (
        "interval-zero",
        _with("marketData.intervalSeconds", 0),
        "spec.marketData.intervalSeconds: Invalid value: 0",
    ),
    ("stale-zero", _with("risk.staleDataSeconds", 0), "spec.risk.staleDataSeconds: Invalid value: 0"),
]


@pytest.mark.parametrize(("name", "spec", "message"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_specs_are_refused_with_a_readable_message(crs, namespace, name, spec, message):
    text = _refusal(crs, namespace, _ts(name, spec))
    assert message in text, text


def test_unknown_fields_are_pruned_not_stored(crs, namespace):
    created = _create(crs, namespace, _ts("pruned", {"symbols": ["AAPL"], "leverage": 100}))
    assert "leverage" not in created["spec"]


def test_strategy_params_are_free_form_and_kept(crs, namespace):
    """The strategy's own model validates params (engine/operator), so the API server stores them as sent."""
    params = {"window": 30, "numStd": 2.5, "nested": {"any": ["thing"]}}
    created = _create(
        crs, namespace, _ts("free-params", {"strategy": {"name": "myDesk.alpha", "params": params}})
    )
    assert created["spec"]["strategy"] == {"name": "myDesk.alpha", "params": params}


# -- the kill-switch release rule -------------------------------------------------------------------


def _engage(crs, ns, name):
    return crs.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        name,
        {"spec": {"killSwitch": {"engaged": True, "reason": "test", "operator": "alice"}}},
    )


def test_engaging_needs_nothing_but_engaged(crs, namespace):
    _create(crs, namespace, _ts("engage"))
    out = crs.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "engage", {"spec": {"killSwitch": {"engaged": True}}}
    )
    assert out["spec"]["killSwitch"]["engaged"] is True


def test_release_without_record_is_refused(crs, namespace):
    _create(crs, namespace, _ts("norelease"))
    _engage(crs, namespace, "norelease")
    with pytest.raises(client.ApiException) as exc:
        crs.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "norelease", {"spec": {"killSwitch": {"engaged": False}}}
        )
    assert exc.value.status == 422
    assert (
        "released only with a release record naming the engagement" in json.loads(exc.value.body)["message"]
    )
    current = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "norelease")
    assert current["spec"]["killSwitch"]["engaged"] is True


def test_release_with_record_is_accepted_and_old_record_cannot_be_reused(crs, namespace):
    _create(crs, namespace, _ts("release"))
    _engage(crs, namespace, "release")
    record = {"operator": "bob", "reason": "root cause fixed", "at": "2026-11-25T10:00:00Z"}
    out = crs.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "release",
        {"spec": {"killSwitch": {"engaged": False, "release": record}}},
    )
    assert out["spec"]["killSwitch"]["engaged"] is False
    # Engage again, then replay the old manifest (same release record): a stale record does not release.
    _engage(crs, namespace, "release")
    with pytest.raises(client.ApiException) as exc:
        crs.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "release",
            {"spec": {"killSwitch": {"engaged": False, "release": record}}},
        )
    assert "release record naming the engagement" in json.loads(exc.value.body)["message"]


def test_gitops_reapply_of_original_manifest_keeps_switch_engaged(cluster, crs, namespace):
    """ArgoCD-style server-side apply by another field manager, with killSwitch absent or disengaged."""
    original = _ts("gitops")
    original["metadata"]["namespace"] = namespace
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        input=yaml.safe_dump(original),
    )
    _engage(crs, namespace, "gitops")
    # 1) the manifest in git has no killSwitch: apply leaves the engaged switch alone.
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        input=yaml.safe_dump(original),
    )
    assert crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gitops")["spec"][
        "killSwitch"
    ]["engaged"]
    # 2) an old manifest that says engaged: false is refused by the API server, loudly.
    reverted = copy.deepcopy(original)
    reverted["spec"]["killSwitch"] = {"engaged": False}
    res = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        input=yaml.safe_dump(reverted),
        check=False,
    )
    assert res.returncode != 0
    assert "released only with a release record naming the engagement" in res.stderr
    assert crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gitops")["spec"][
        "killSwitch"
    ]["engaged"]


def test_printer_columns(cluster, crs, namespace):
    _create(crs, namespace, _ts("cols"))
    _engage(crs, namespace, "cols")
    out = cluster.kubectl("get", "ts", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header[:9] == ["NAME", "MODE", "ACCOUNT", "PHASE", "KILL", "SWITCH", "HELD", "BY", "READY"]
    assert "AGE" in header
    row = out.splitlines()[1].split()
    assert row[0] == "cols"
    assert row[1] == "paper"
    assert "true" in row
