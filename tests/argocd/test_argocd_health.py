"""Argo CD: the health checks against every case of their health_test.yaml, evaluated by argo-cd
v2.14.21's own util/lua (gopher-lua with Argo CD's default libraries: no `string`, no `math`), directly and
through the argocd-cm patch as Argo CD's settings manager reads it; the Applications (sync waves,
ignoreDifferences, sync options), and the kill switch kept out of git."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from quantzoo_operator.status import Reason

from tests.argocd import argocd_lua

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


@pytest.fixture(scope="module")
def evaluated(argocd_lua_bin) -> dict[tuple[str, Path, str], dict[str, str]]:
    """Every case evaluated once per way (one argocd-lua process per health check and way, not per case):
    ("script", folder, inputPath) -> the script alone, as Argo CD runs a customization without useOpenLibs;
    ("argocd-cm", folder, inputPath) -> what the application controller reports once argocd-cm-patch.yaml
    is installed (argocd-cm read by Argo CD's settings manager)."""
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    out = {}
    for folder in HEALTH_CHECKS:
        inputs = [c["inputPath"] for c in yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]]
        objs = [yaml.safe_load((folder / i).read_text()) for i in inputs]
        script = argocd_lua.execute_health_lua(argocd_lua_bin, (folder / "health.lua").read_text(), objs)
        via_cm = argocd_lua.health_from_configmap(argocd_lua_bin, patch, objs)
        for i, a, b in zip(inputs, script, via_cm, strict=True):
            out["script", folder, i] = a
            out["argocd-cm", folder, i] = b
    return out


@pytest.mark.parametrize("way", ["script", "argocd-cm"])
@pytest.mark.parametrize(("folder", "case"), list(health_cases()))
def test_health_case(evaluated, way, folder, case):
    want = {k: v for k, v in case["healthStatus"].items() if v}
    assert evaluated[way, folder, case["inputPath"]] == want


def test_the_sandbox_is_argo_cds(argocd_lua_bin):
    """Argo CD opens no `string`/`math` for a health check unless useOpenLibs: a script using them errors."""
    script = 'return {status = "Healthy", message = string.format("%d", math.floor(1.5))}'
    [sandboxed] = argocd_lua.execute_health_lua(argocd_lua_bin, script, [{}])
    assert "attempt to index a non-table object(nil)" in sandboxed["error"]
    [opened] = argocd_lua.execute_health_lua(argocd_lua_bin, script, [{}], use_open_libs=True)
    assert opened == {"status": "Healthy", "message": "1"}


def test_our_scripts_use_no_library_argo_cd_leaves_closed():
    for folder in HEALTH_CHECKS:
        code = [line.split("--")[0] for line in (folder / "health.lua").read_text().splitlines()]
        for lib in ("string.", "math.", "io.", "debug.", ":find(", ":format(", ":sub(", ":match("):
            assert not any(lib in line for line in code), f"{folder.name}/health.lua uses {lib}"


def test_ready_false_is_degraded_exactly_for_the_operators_failure_reasons(argocd_lua_bin):
    """Ready=False is Degraded for the reasons the operator gives when the TradingSystem itself is at fault
    (those it also reports as Degraded=True), Progressing for every other reason (starting, rolling out)."""
    failures = {
        Reason.RECONCILE_FAILED,
        Reason.INVALID_SPEC,
        Reason.CHILD_REJECTED,
        Reason.CREDENTIALS_SECRET_MISSING,
        Reason.CREDENTIALS_SECRET_INVALID,
    }
    objs = []
    for reason in Reason:
        obj = yaml.safe_load((TS_CHECK / "testdata" / "progressing-starting.yaml").read_text())
        next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["reason"] = str(reason)
        objs.append(obj)
    got = argocd_lua.execute_health_lua(argocd_lua_bin, (TS_CHECK / "health.lua").read_text(), objs)
    assert {r: g["status"] for r, g in zip(Reason, got, strict=True)} == {
        r: "Degraded" if r in failures else "Progressing" for r in Reason
    }


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


def test_suspended_message_names_reason_and_who(argocd_lua_bin):
    obj = yaml.safe_load((TS_CHECK / "testdata" / "healthy.yaml").read_text())
    obj["metadata"]["generation"] = 3
    obj["spec"]["killSwitch"] = {"engaged": True, "reason": "fat finger on AAPL", "operator": "erin"}
    [got] = argocd_lua.execute_health_lua(argocd_lua_bin, (TS_CHECK / "health.lua").read_text(), [obj])
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
    # The scripts run in Argo CD's default sandbox: the patch opens no extra Lua library.
    assert not [key for key in data if key.startswith("resource.customizations.useOpenLibs.")]


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
