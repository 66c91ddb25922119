"""The sharpened kill-switch contract (issue #15) at a real kube-apiserver: nothing but a release weakens
an engaged switch (finding 5), a release names the engagement it ends so an older one cannot be replayed
(finding 6), a release clears the incident, and an engage of an older object is not refused by a rule
added to the CRD later (finding 10, CRD validation ratcheting)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.killswitch import (
    engage_patch,
    kill_switch_of,
    plan_engage,
    release_patch,
    release_patch_for,
)

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "trading.quantzoo.io_tradingsystems.yaml"


@pytest.fixture
def crs(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


def _create(crs: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any] | None = None) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": spec or {"symbols": ["AAPL"]},
    }
    return crs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def _patch(crs: client.CustomObjectsApi, ns: str, name: str, patch: dict) -> dict:
    return crs.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)


def _ks(crs: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    return kill_switch_of(crs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))


def _eventually(check, what: str, timeout: float = 15.0) -> None:
    """A CRD update reaches the API server's handlers shortly after the apply, not at once."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _dry_run_ok(crs: client.CustomObjectsApi, ns: str, name: str, patch: dict) -> bool:
    try:
        crs.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch, dry_run="All")
    except client.ApiException:
        return False
    return True


def _refused(crs: client.CustomObjectsApi, ns: str, name: str, patch: dict) -> str:
    with pytest.raises(client.ApiException) as exc:
        _patch(crs, ns, name, patch)
    assert exc.value.status == 422, exc.value.body
    return json.loads(exc.value.body)["message"]


# -- finding 5: nothing but a release weakens an engaged switch -------------------------------------------
def test_halt_cannot_become_reduce_only_while_engaged(crs, namespace):
    _create(crs, namespace, "weaken-mode")
    _patch(crs, namespace, "weaken-mode", engage_patch(reason="incident", operator="alice"))
    message = _refused(crs, namespace, "weaken-mode", {"spec": {"killSwitch": {"mode": "ReduceOnly"}}})
    assert "only a release weakens an engaged kill switch" in message
    assert _ks(crs, namespace, "weaken-mode")["mode"] == "Halt"


def test_close_positions_cannot_be_dropped_while_engaged(crs, namespace):
    _create(crs, namespace, "weaken-close")
    _patch(
        crs, namespace, "weaken-close", engage_patch(reason="flatten", operator="alice", close_positions=True)
    )
    message = _refused(crs, namespace, "weaken-close", {"spec": {"killSwitch": {"closePositions": False}}})
    assert "only a release weakens an engaged kill switch" in message
    assert _ks(crs, namespace, "weaken-close")["closePositions"] is True


def test_stronger_asks_while_engaged_are_accepted(crs, namespace):
    _create(crs, namespace, "stronger")
    _patch(crs, namespace, "stronger", engage_patch(reason="soft", operator="alice", mode="ReduceOnly"))
    engaged_at = _ks(crs, namespace, "stronger")["engagedAt"]
    patch = plan_engage(_ks(crs, namespace, "stronger"), reason="hard", mode="Halt", close_positions=True)
    _patch(crs, namespace, "stronger", patch)
    ks = _ks(crs, namespace, "stronger")
    assert (ks["mode"], ks["closePositions"], ks["engagedAt"]) == ("Halt", True, engaged_at)


def test_a_release_clears_the_incident_so_a_plain_engage_is_a_halt_with_no_old_who_or_why(crs, namespace):
    _create(crs, namespace, "incident")
    _patch(
        crs, namespace, "incident", engage_patch(reason="old incident", operator="alice", mode="ReduceOnly")
    )
    _patch(
        crs,
        namespace,
        "incident",
        release_patch_for(_ks(crs, namespace, "incident"), operator="b", reason="ok"),
    )
    _patch(crs, namespace, "incident", {"spec": {"killSwitch": {"engaged": True}}})  # a plain engage
    ks = _ks(crs, namespace, "incident")
    assert ks["mode"] == "Halt"
    assert "reason" not in ks
    assert "operator" not in ks


# -- finding 6: a release names the engagement it ends ----------------------------------------------------
def test_an_older_release_record_cannot_be_replayed(crs, namespace):
    _create(crs, namespace, "replay")
    _patch(crs, namespace, "replay", engage_patch(reason="first", operator="alice"))
    backup_release = release_patch_for(_ks(crs, namespace, "replay"), operator="bob", reason="first over")
    _patch(crs, namespace, "replay", backup_release)
    _patch(crs, namespace, "replay", engage_patch(reason="second", operator="carol"))
    assert "release" not in _ks(crs, namespace, "replay")  # an engage clears the old release
    # A manifest or backup carrying the earlier release: refused, the second engagement holds.
    message = _refused(crs, namespace, "replay", backup_release)
    assert "naming the engagement it ends" in message
    assert _ks(crs, namespace, "replay")["engaged"] is True


def test_a_release_must_name_the_current_engagement(crs, namespace):
    _create(crs, namespace, "name")
    _patch(crs, namespace, "name", engage_patch(reason="x", operator="alice"))
    unnamed = release_patch(operator="bob", reason="ok", engagement=None)
    assert "naming the engagement it ends" in _refused(crs, namespace, "name", unnamed)
    other = release_patch(operator="bob", reason="ok", engagement="2020-01-01T00:00:00.000Z")
    assert "naming the engagement it ends" in _refused(crs, namespace, "name", other)
    _patch(
        crs, namespace, "name", release_patch_for(_ks(crs, namespace, "name"), operator="bob", reason="ok")
    )
    assert _ks(crs, namespace, "name")["engaged"] is False


# -- finding 10: an engage of an older object is not refused by a rule added later ------------------------
def test_an_older_object_that_fails_a_new_rule_can_still_be_engaged(cluster, crs, namespace):
    """Apply an object, tighten the CRD so the object fails two new rules (at most two symbols; a CEL rule
    on `risk`), then engage: the API server ratchets (k8s 1.34: a rule is not re-checked on an unchanged
    field), so the engage is accepted, while an edit of the now-invalid field is refused (the tightening is
    in force). A rule attached to `spec` itself would not ratchet (spec changes with every engage): rules
    go on the narrowest field, as crds/ does."""
    _create(crs, namespace, "ratchet", {"symbols": ["AAPL", "MSFT", "TSLA"]})
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["symbols"]["maxItems"] = 2
    spec["properties"]["risk"].setdefault("x-kubernetes-validations", []).append(
        {"rule": "!has(self.maxOrderQuantity) || self.maxOrderQuantity <= 5", "message": "a rule added later"}
    )
    applied = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(crd), check=False
    )
    assert applied.returncode == 0, applied.stderr
    edit = {"spec": {"symbols": ["AAPL", "MSFT", "IBM"]}}
    try:
        _eventually(lambda: not _dry_run_ok(crs, namespace, "ratchet", edit), "the tightened CRD")
        message = _refused(crs, namespace, "ratchet", edit)
        assert "symbols" in message
        _patch(crs, namespace, "ratchet", engage_patch(reason="r" * 3000, operator="alice", mode="halt"))
        ks = _ks(crs, namespace, "ratchet")
        assert (ks["engaged"], ks["mode"], len(ks["reason"])) == (True, "Halt", 1024)
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
        _eventually(lambda: _dry_run_ok(crs, namespace, "ratchet", edit), "the CRD restored")
