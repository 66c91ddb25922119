"""Argo CD: the TradingSystem health check against every case of its health_test.yaml (real Lua 5.1),
the Applications (sync waves, ignoreDifferences, sync options), and the kill switch kept out of git."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "argocd"
CUSTOMIZATIONS = ARGOCD / "resource_customizations"
HEALTH_CHECKS = sorted(p.parent for p in CUSTOMIZATIONS.glob("*/*/health.lua"))
TS_CHECK = CUSTOMIZATIONS / "trading.quantzoo.io" / "TradingSystem"
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health_cases():
    for folder in HEALTH_CHECKS:
        doc = yaml.safe_load((folder / "health_test.yaml").read_text())
        for case in doc["tests"]:
            rel = folder.relative_to(CUSTOMIZATIONS)
            yield pytest.param(folder, case, id=f"{rel}:{case['inputPath']}")


@pytest.mark.parametrize(("folder", "case"), list(health_cases()))
def test_health_case(run_health, folder, case):
    obj = yaml.safe_load((folder / case["inputPath"]).read_text())
    got = run_health((folder / "health.lua").read_text(), obj)
    want = case["healthStatus"]
    assert got["status"] == want["status"]
    assert got.get("message", "") == want.get("message", "")


def test_health_test_files_use_the_upstream_layout():
    assert [f.relative_to(CUSTOMIZATIONS).as_posix() for f in HEALTH_CHECKS] == [
        "argoproj.io/Application",
        "trading.quantzoo.io/TradingSystem",
    ]
    for folder in HEALTH_CHECKS:
        doc = yaml.safe_load((folder / "health_test.yaml").read_text())
        assert set(doc) == {"tests"}
        inputs = set()
        for case in doc["tests"]:
            assert set(case) == {"healthStatus", "inputPath"}
            assert case["healthStatus"]["status"] in STATUSES
            assert case["inputPath"].startswith("testdata/")
            inputs.add(case["inputPath"])
        on_disk = {f"testdata/{p.name}" for p in (folder / "testdata").glob("*.yaml")}
        assert inputs == on_disk, "every testdata file is a case, every case has its file"


def test_tradingsystem_cases_cover_every_status():
    doc = yaml.safe_load((TS_CHECK / "health_test.yaml").read_text())
    assert len(doc["tests"]) >= 7
    assert {c["healthStatus"]["status"] for c in doc["tests"]} == {
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
    }


def test_suspended_message_names_reason_and_who(run_health):
    obj = yaml.safe_load((TS_CHECK / "testdata" / "healthy.yaml").read_text())
    obj["metadata"]["generation"] = 3
    obj["spec"]["killSwitch"] = {"engaged": True, "reason": "fat finger on AAPL", "operator": "erin"}
    got = run_health((TS_CHECK / "health.lua").read_text(), obj)
    assert got["status"] == "Suspended"
    assert "fat finger on AAPL" in got["message"]
    assert "erin" in got["message"]


def test_testdata_are_valid_tradingsystems():
    """Every TradingSystem input names only fields the CRD's schema knows (so the cases are realistic)."""
    crd = yaml.safe_load((REPO / "crds" / "trading.quantzoo.io_tradingsystems.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def unknown(value, node, path):
        if node.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, dict | list):
            return []
        if isinstance(value, list):
            return [u for i, v in enumerate(value) for u in unknown(v, node.get("items", {}), f"{path}[{i}]")]
        props = node.get("properties")
        if props is None:
            return []
        out = []
        for key, sub in value.items():
            if key not in props:
                out.append(f"{path}.{key}")
            else:
                out += unknown(sub, props[key], f"{path}.{key}")
        return out

    for path in sorted((TS_CHECK / "testdata").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        obj.pop("metadata")
        assert unknown(obj, schema, "") == [], path.name


# ---------------------------------------------------------------- argocd-cm patch


def test_argocd_cm_patch_carries_the_health_checks_verbatim():
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    data = patch["data"]
    assert (
        data["resource.customizations.health.trading.quantzoo.io_TradingSystem"]
        == (TS_CHECK / "health.lua").read_text()
    )
    assert (
        data["resource.customizations.health.argoproj.io_Application"]
        == (CUSTOMIZATIONS / "argoproj.io" / "Application" / "health.lua").read_text()
    )
    ignore = yaml.safe_load(
        data["resource.customizations.ignoreDifferences.trading.quantzoo.io_TradingSystem"]
    )
    assert ignore == {"jsonPointers": ["/spec/killSwitch"]}


# ---------------------------------------------------------------- Applications


def applications() -> dict[str, dict]:
    apps = {}
    for path in sorted((ARGOCD / "applications").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == "argoproj.io/v1alpha1"
        assert doc["kind"] == "Application"
        apps[doc["metadata"]["name"]] = doc
    return apps


def wave(app: dict) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_app_of_apps_orders_platform_before_tradingsystems():
    apps = applications()
    root = apps["quantzoo"]
    assert root["spec"]["source"]["path"] == "argocd/applications"
    assert root["spec"]["source"]["directory"]["exclude"] == "app-of-apps.yaml"
    platform, systems = apps["quantzoo-platform"], apps["quantzoo-trading-systems"]
    assert wave(platform) < 0 < wave(systems)
    assert platform["spec"]["source"]["path"] == "charts/quantzoo"
    assert systems["spec"]["source"]["path"] == "argocd/tradingsystems"
    for app in apps.values():
        # Cascading deletion, in reverse wave order: TradingSystems go while the operator still runs.
        assert "resources-finalizer.argocd.argoproj.io" in app["metadata"]["finalizers"]
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    values = platform["spec"]["source"]["helm"]["valuesObject"]
    assert values["tests"] == {"enabled": False}, "Argo CD does not run Helm test hooks"
    assert "ServerSideApply=true" in platform["spec"]["syncPolicy"]["syncOptions"]


def test_tradingsystems_application_leaves_the_kill_switch_alone():
    app = applications()["quantzoo-trading-systems"]
    assert app["spec"]["ignoreDifferences"] == [
        {"group": "trading.quantzoo.io", "kind": "TradingSystem", "jsonPointers": ["/spec/killSwitch"]}
    ]
    options = app["spec"]["syncPolicy"]["syncOptions"]
    assert "ServerSideApply=true" in options
    assert "RespectIgnoreDifferences=true" in options
    assert app["spec"]["syncPolicy"]["automated"]["selfHeal"] is True
    text = (ARGOCD / "applications" / "quantzoo-trading-systems.yaml").read_text()
    for setting in (
        "ignoreDifferences:",
        "selfHeal: true",
        "- RespectIgnoreDifferences=true",
        "- ServerSideApply=true",
    ):
        before = text[: text.index(setting)].rstrip().splitlines()
        assert any(line.strip().startswith("# Why:") for line in before[-8:]), (
            f"no reason given for {setting}"
        )


def test_tradingsystems_in_git_carry_no_kill_switch():
    manifests = sorted((ARGOCD / "tradingsystems").glob("*.yaml"))
    assert manifests
    for path in manifests:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "TradingSystem"
            assert "killSwitch" not in doc["spec"], path.name
            assert "namespace" not in doc["metadata"], "the Application's destination decides the namespace"
            assert doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"
    # Nothing argocd syncs from git (Applications and manifests) sets a kill switch.
    for path in [*(ARGOCD / "applications").glob("*.yaml"), *manifests]:
        for doc in yaml.safe_load_all(path.read_text()):
            assert "engaged" not in str(doc), path.name
