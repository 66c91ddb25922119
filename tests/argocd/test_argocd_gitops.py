"""A real Argo CD (v2.14.21: application controller, repo server, redis) syncs QuantZoo from a git repository
on this machine into the session's real single-node cluster (tests/conftest.py `real_cluster`), installed
the way argocd/README.md says. What Argo CD installs runs for real: the operator as its Deployment's pod
with the locally built image (set in the Application's Helm values by a commit, as a user would), the
engines and safety services as the pods the operator creates; the tests read the engines' state from
their pods (GET /state at the pod IP from this host).

Runs after the tests on the helm release (tests/pods; `after_helm_release`): both install the same chart
and CRD. It starts from a clean slate (the TradingSystem CRD removed when no system is left, so that Argo
CD installs it; the namespaces it syncs into gone) and leaves one: no Argo CD, no TradingSystem, those
namespaces gone, the CRD present (as `helm uninstall` leaves it).

Still a stand-in: Argo CD's processes run on this host, not as pods (they reach the node's API server
through a kubeconfig, as Argo CD's own e2e does), and no argocd-server runs (no UI/API/SSO): the tests
read Argo CD's verdicts from the Application objects the controller writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from hack.devcluster import argocd, node
from hack.devcluster.podrunner import wait_for
from tests.argocd.gitops import (
    PLACEHOLDER_URL,
    DeploymentWatch,
    EngineWatch,
    GitRepo,
    engine_state,
    readme_commands,
)

REPO = Path(__file__).resolve().parents[2]
CRD = "tradingsystems.trading.quantzoo.io"
SYSTEMS = ("demo", "momentum-us")
NS = "trading"
OPERATOR_NS = "quantzoo-system"
OPERATOR = "app.kubernetes.io/component=operator"
PLATFORM = "argocd/applications/quantzoo-platform.yaml"
INSTALL_SECTION = "## Installing on an existing Argo CD"
CEL_RELEASE = "an engaged kill switch is released only with a release record naming the engagement it ends"

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.after_helm_release, pytest.mark.timeout(900)]


@dataclass
class Stage:
    cd: argocd.ArgoCD
    repo: GitRepo
    real: node.RealCluster
    api: client.ApiClient
    started: float
    crd_removed_first: bool
    env: dict[str, str] = field(default_factory=dict)

    def app(self, name: str) -> dict[str, Any]:
        return self.cd.application(name) or {}

    def resource(self, app: str, kind: str, name: str) -> dict[str, Any] | None:
        for res in self.app(app).get("status", {}).get("resources", []):
            if res["kind"] == kind and res["name"] == name:
                return res
        return None

    def ts(self, name: str) -> dict[str, Any] | None:
        try:
            return client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                "trading.quantzoo.io", "v1alpha1", NS, "tradingsystems", name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def refresh(self, app: str) -> None:
        self.cd.kubectl(
            "-n",
            argocd.NAMESPACE,
            "annotate",
            "application",
            app,
            "argocd.argoproj.io/refresh=normal",
            "--overwrite",
        )

    def wait_synced_to(self, app: str, revision: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            self.refresh(app)
            a = self.app(app)
            op = a.get("status", {}).get("operationState", {})
            if op.get("syncResult", {}).get("revision") == revision and op.get("phase") in (
                "Succeeded",
                "Failed",
                "Error",
            ):
                return a
            return None

        try:
            return wait_for(done, timeout, interval=2, what=f"{app} to sync {revision[:8]}")
        except TimeoutError as exc:
            status = self.app(app).get("status", {})
            seen = {k: status.get(k) for k in ("sync", "operationState", "conditions", "health")}
            live = self.cd.kubectl(
                "-n", NS, "get", "ts", "-o", "yaml", "--show-managed-fields", check=False
            ).stdout
            raise AssertionError(
                f"{exc}\n{json.dumps(seen, indent=1)[:3000]}\n{live[:6000]}\n"
                f"{self.repo.git('log', '-p', '-3')[:3000]}"
            ) from None

    def wait_compared_to(self, app: str, revision: str, timeout: float = 120) -> dict[str, Any]:
        """Until Argo CD has compared `app` with git at `revision` (whether or not it then syncs)."""

        def done() -> dict[str, Any] | None:
            self.refresh(app)
            a = self.app(app)
            return a if a.get("status", {}).get("sync", {}).get("revision") == revision else None

        return wait_for(done, timeout, interval=2, what=f"{app} compared with {revision[:8]}")

    def sync_now(self, app: str, timeout: float = 120) -> dict[str, Any]:
        """Request a sync on the Application (what `argocd app sync --prune` does); its operationState."""
        operation = {"operation": {"sync": {"prune": True}, "initiatedBy": {"username": "ci"}}}
        self.cd.kubectl(
            "-n", argocd.NAMESPACE, "patch", "application", app, "--type=merge", "-p", json.dumps(operation)
        )  # fmt: skip
        wait_for(lambda: "operation" not in self.app(app), timeout, interval=1, what=f"{app} sync to start")
        return wait_for(
            lambda: (op := self.app(app)["status"]["operationState"]).get("phase") != "Running" and op,
            timeout,
            interval=1,
            what=f"{app} sync to finish",
        )

    def engine(self, system: str) -> dict[str, Any]:
        return engine_state(client.CoreV1Api(self.api), NS, system)

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.repo.work,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )


def _ts_exists_anywhere(cd: argocd.ArgoCD) -> bool:
    out = cd.kubectl("get", "tradingsystems", "-A", "-o", "name", check=False)
    return out.returncode == 0 and bool(out.stdout.strip())


def _namespaces_gone(cd: argocd.ArgoCD, names: tuple[str, ...]) -> None:
    """Delete `names` and wait until they are gone (a Terminating namespace refuses what Argo CD creates)."""
    cd.kubectl("delete", "namespace", *names, "--ignore-not-found", "--wait=false")
    wait_for(
        lambda: not cd.kubectl("get", "namespace", *names, "-o", "name", "--ignore-not-found").stdout.strip(),
        180,
        interval=1,
        what=f"namespaces {names} gone",
    )


def _clear_systems(cd: argocd.ArgoCD) -> None:
    """Every TradingSystem deleted: by the operator's finalizer while it still runs, else by hand."""
    if not _ts_exists_anywhere(cd):
        return
    cd.kubectl("delete", "tradingsystems", "--all", "-A", "--wait=false", check=False)
    try:
        wait_for(lambda: not _ts_exists_anywhere(cd), 60, interval=1, what="TradingSystems gone")
    except TimeoutError:  # the operator is gone: nobody clears the finalizer
        items = json.loads(cd.kubectl("get", "tradingsystems", "-A", "-o", "json").stdout)["items"]
        unfinalize = '{"metadata":{"finalizers":null}}'
        for meta in (ts["metadata"] for ts in items):
            cd.kubectl("-n", meta["namespace"], "patch", "ts", meta["name"], "--type=merge", "-p", unfinalize,
                       check=False)  # fmt: skip


@pytest.fixture(scope="module")
def stage(real_cluster: node.RealCluster, tmp_path_factory) -> Iterator[Stage]:
    bin_dir = argocd.build_binaries()
    root = tmp_path_factory.mktemp("argocd")
    tools = real_cluster.plane.bin_dir  # kubectl, and helm for the repo server
    cd = argocd.ArgoCD(root / "argocd", bin_dir, real_cluster.kubeconfig, tools / "kubectl", tools)
    # A clean slate: the TradingSystem CRD that a helm release installed before (helm never deletes it) is
    # taken away when no TradingSystem is left, so that it is Argo CD that installs it here; the namespaces
    # it syncs into (left by the tests on the release) are gone.
    removed = not _ts_exists_anywhere(cd)
    if removed:
        cd.kubectl("delete", "crd", CRD, "--ignore-not-found", "--timeout=120s")
    _namespaces_gone(cd, (NS, OPERATOR_NS))
    cd.start()
    assert cd.version() == f"argocd: v{argocd.VERSION}+unknown"
    env = {
        **os.environ,
        "KUBECONFIG": str(real_cluster.kubeconfig),
        "PATH": f"{tools}:{os.environ.get('PATH', '')}",
    }
    api = config.new_client_from_config(config_file=str(real_cluster.kubeconfig))
    st = Stage(cd, GitRepo(root / "git"), real_cluster, api, time.time(), removed, env)
    try:
        yield st
    finally:
        # Leave the node as the release's uninstall does: no Argo CD, no system, the namespaces gone, the
        # CRD present.
        for app in ("quantzoo-trading-systems", "quantzoo-platform", "quantzoo"):
            cd.kubectl(
                "-n", argocd.NAMESPACE, "patch", "application", app, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
        cd.stop()
        _clear_systems(cd)
        cd.kubectl("delete", "namespace", argocd.NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        instances = "app.kubernetes.io/instance in (quantzoo,quantzoo-platform)"
        cd.kubectl("delete", "clusterroles,clusterrolebindings", "-l", instances, check=False)
        _namespaces_gone(cd, (NS, OPERATOR_NS, argocd.NAMESPACE))
        crd_file = REPO / "crds" / "trading.quantzoo.io_tradingsystems.yaml"
        cd.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_file), check=False)
        cd.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}", check=False)


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _healthy(stage: Stage, app: str) -> bool:
    status = stage.app(app).get("status", {})
    return (
        status.get("health", {}).get("status") == "Healthy"
        and status.get("sync", {}).get("status") == "Synced"
    )


@pytest.fixture(scope="module")
def installed(stage: Stage) -> Stage:
    """The node's image set in the platform Application's Helm values (a commit, as a user running their own
    registry's image would), then argocd/README.md's install commands, run as shown (the repository URL
    filled in)."""
    repository, tag = stage.real.node.app_image.rsplit(":", 1)
    values = '        image:\n          repository: quantzoo/quantzoo\n          tag: "0.1.0"\n'
    platform = stage.repo.read(PLATFORM)
    assert values in platform, "the image values argocd/README.md points at"
    ours = f'        image:\n          repository: {repository}\n          tag: "{tag}"\n'
    ours += "          pullPolicy: Never\n"
    stage.repo.write(PLATFORM, platform.replace(values, ours))
    stage.repo.commit("platform: the image our nodes run")
    for command in readme_commands(REPO / "argocd" / "README.md", INSTALL_SECTION):
        stage.run(command.replace("YOUR_REPO_URL", stage.repo.url))
    for app in ("quantzoo", "quantzoo-platform", "quantzoo-trading-systems"):
        try:
            wait_for(lambda app=app: _healthy(stage, app), 300, interval=2, what=f"{app} Synced and Healthy")
        except TimeoutError:
            pytest.fail(
                f"{app}: {json.dumps(stage.app(app).get('status', {}), indent=1)[:3000]}\n"
                f"controller log:\n{stage.cd.tail('argocd-application-controller')}"
            )
    return stage


def test_app_of_apps_installs_the_crd_and_operator_before_the_tradingsystems(installed: Stage) -> None:
    st = installed
    assert PLACEHOLDER_URL not in st.repo.read("argocd/applications/app-of-apps.yaml")
    platform, systems = st.app("quantzoo-platform"), st.app("quantzoo-trading-systems")
    kinds = {(r["kind"], r["name"]) for r in platform["status"]["resources"]}
    assert ("CustomResourceDefinition", CRD) in kinds
    assert ("Deployment", "quantzoo-operator") in kinds
    crd = json.loads(st.cd.kubectl("get", "crd", CRD, "-o", "json").stdout)
    if st.crd_removed_first:
        assert _time(crd["metadata"]["creationTimestamp"]) >= int(st.started) - 1, "Argo CD created the CRD"
    # Wave -1 first: the platform's sync finished (and it was Healthy, which the root waits for through the
    # Application health check) before the root created the wave-1 Application and so its TradingSystems.
    platform_done = _time(platform["status"]["operationState"]["finishedAt"])
    systems_created = _time(systems["metadata"]["creationTimestamp"])
    assert platform_done <= systems_created
    # The operator's pod runs the node's image and was Available before any TradingSystem existed.
    deploy = json.loads(
        st.cd.kubectl("-n", OPERATOR_NS, "get", "deployment", "-l", OPERATOR, "-o", "json").stdout
    )
    (operator,) = deploy["items"]
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == st.real.node.app_image
    available = {c["type"]: c for c in operator["status"]["conditions"]}["Available"]
    assert available["status"] == "True"
    for system in SYSTEMS:
        ts = st.ts(system)
        assert ts is not None
        assert _time(ts["metadata"]["creationTimestamp"]) >= systems_created
        assert _time(ts["metadata"]["creationTimestamp"]) >= _time(available["lastTransitionTime"])
    root = st.app("quantzoo")["status"]["operationState"]["syncResult"]["resources"]
    assert {r["name"] for r in root} == {"quantzoo-platform", "quantzoo-trading-systems"}


def _engage(st: Stage, system: str, reason: str, who: str) -> None:
    patch = {"spec": {"killSwitch": {"engaged": True, "reason": reason, "operator": who}}}
    st.run(f"kubectl -n {NS} patch ts {system} --type merge -p '{json.dumps(patch)}'")


def _ts_health(st: Stage, system: str) -> dict[str, str]:
    return (st.resource("quantzoo-trading-systems", "TradingSystem", system) or {}).get("health", {})


def test_tradingsystem_is_healthy_then_suspended_while_its_kill_switch_is_engaged(installed: Stage) -> None:
    st = installed
    health = wait_for(
        lambda: _ts_health(st, "momentum-us").get("status") == "Healthy" and _ts_health(st, "momentum-us"), 60
    )
    assert health["message"] == "AllComponentsReady: engine and safety service are ready"
    _engage(st, "momentum-us", "runaway trading", "alice")
    # First "(not yet acknowledged by the operator)", then, once the engine acknowledged the halt:
    suspended = {"status": "Suspended", "message": "Kill switch engaged (Halt) by alice: runaway trading"}
    wait_for(
        lambda: _ts_health(st, "momentum-us") == suspended,
        60,
        interval=1,
        what=f"Argo CD to show {suspended}",
    )
    wait_for(lambda: st.engine("momentum-us")["trading_state"] == "HALTED", 30, what="engine HALTED")
    # ignoreDifferences: the engaged switch is not drift.
    assert st.resource("quantzoo-trading-systems", "TradingSystem", "momentum-us")["status"] == "Synced"
    assert st.app("quantzoo-trading-systems")["status"]["health"]["status"] == "Suspended"


def test_selfheal_reverting_an_engaged_systems_manifest_does_not_resume_trading(installed: Stage) -> None:
    st = installed
    system, path = "demo", "argocd/tradingsystems/demo.yaml"
    _engage(st, system, "fat finger on AAPL", "erin")
    suspended = {"status": "Suspended", "message": "Kill switch engaged (Halt) by erin: fat finger on AAPL"}
    wait_for(lambda: _ts_health(st, system) == suspended, 60, interval=1, what=f"Argo CD to show {suspended}")
    wait_for(lambda: st.engine(system)["trading_state"] == "HALTED", 30, what="engine HALTED")

    # 1. A change and its revert (git revert) while engaged: both sync, the switch stays engaged.
    original = st.repo.read(path)
    st.repo.write(path, original.replace("maxOrderNotional: 50000", "maxOrderNotional: 40000"))
    st.wait_synced_to("quantzoo-trading-systems", st.repo.commit("demo: lower maxOrderNotional"))
    assert st.ts(system)["spec"]["risk"]["maxOrderNotional"] == 40000
    st.repo.git("revert", "--no-edit", "HEAD")
    st.repo.git("push", "-q", "origin", "HEAD:main")
    app = st.wait_synced_to("quantzoo-trading-systems", st.repo.git("rev-parse", "HEAD"))
    assert app["status"]["operationState"]["phase"] == "Succeeded"
    ts = st.ts(system)
    assert ts["spec"]["risk"]["maxOrderNotional"] == 50000
    assert ts["spec"]["killSwitch"]["engaged"] is True

    # 2. A manifest that carries the pre-incident switch (engaged: false, as someone copied it from a live
    # object) would resume trading if Argo CD applied it. It does not: /spec/killSwitch is ignored when
    # comparing, so the Application stays Synced and selfHeal has nothing to do ...
    doc = yaml.safe_load(original)
    doc["spec"]["killSwitch"] = {"engaged": False}
    st.repo.write(path, yaml.safe_dump(doc, sort_keys=False))
    app = st.wait_compared_to(
        "quantzoo-trading-systems", st.repo.commit("demo: manifest as before the incident")
    )
    assert app["status"]["sync"]["status"] == "Synced"
    # ... and a sync that tries (requested by hand) DOES send `engaged: false` (RespectIgnoreDifferences
    # does not strip it with server-side apply), but the CRD's CEL rule refuses a release without a new
    # release record: the sync fails and Argo CD shows the API server's reason.
    op = st.sync_now("quantzoo-trading-systems")
    assert op["phase"] == "Failed"
    assert CEL_RELEASE in op["message"]
    ts = st.ts(system)
    assert ts["spec"]["killSwitch"]["engaged"] is True, "trading resumed"
    time.sleep(3)  # a release would reach the engine within a second (operator push)
    assert st.engine(system)["trading_state"] == "HALTED"
    # Argo CD shows why: the TradingSystem is Suspended and says who engaged it and why.
    assert _ts_health(st, system) == suspended

    st.repo.write(path, original)
    st.wait_compared_to(
        "quantzoo-trading-systems", st.repo.commit("demo: back to the manifest without killSwitch")
    )


CHILD_KINDS = ("statefulsets", "deployments", "services", "secrets", "configmaps", "serviceaccounts", "roles",
               "rolebindings", "networkpolicies", "poddisruptionbudgets")  # fmt: skip


def _children(st: Stage) -> dict[str, dict[str, Any]]:
    selector = "app.kubernetes.io/managed-by=quantzoo-operator"
    out = st.cd.kubectl("-n", NS, "get", ",".join(CHILD_KINDS), "-l", selector, "-o", "json")
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in json.loads(out.stdout)["items"]}


def test_argocd_never_adopts_or_prunes_the_operators_children(installed: Stage) -> None:
    st = installed
    before = _children(st)
    assert any(k.startswith("StatefulSet/") for k in before)
    assert any(k.startswith("Secret/") for k in before)
    # A sync with prune, requested on the Application as `argocd app sync --prune` would.
    assert st.sync_now("quantzoo-trading-systems")["phase"] == "Succeeded"
    app = st.app("quantzoo-trading-systems")
    managed = {(r["kind"], r["name"]) for r in app["status"]["resources"]}
    assert managed == {("TradingSystem", s) for s in SYSTEMS}, "Argo CD tracks only what is in git"
    after = _children(st)
    assert {k: o["metadata"]["uid"] for k, o in after.items()} == {
        k: o["metadata"]["uid"] for k, o in before.items()
    }
    for key, obj in after.items():
        meta = obj["metadata"]
        assert "app.kubernetes.io/instance" not in (meta.get("labels") or {}), key
        assert not [a for a in (meta.get("annotations") or {}) if a.startswith("argocd.argoproj.io/")], key
        assert "argocd-controller" not in {m.get("manager") for m in meta.get("managedFields") or []}, key


def test_deleting_the_application_removes_tradingsystems_first_and_the_finalizer_halts_them(
    installed: Stage,
) -> None:
    st = installed
    gone: dict[str, float] = {}

    def all_gone() -> bool:
        for system in SYSTEMS:
            if system not in gone and st.ts(system) is None:
                gone[system] = time.time()
        return len(gone) == len(SYSTEMS)

    operator = DeploymentWatch(client.AppsV1Api(st.api), OPERATOR_NS, OPERATOR).start()
    engines = EngineWatch(client.CoreV1Api(st.api), NS).start()
    wait_for(lambda: set(engines.seen) == set(SYSTEMS), 30, what="every engine answering")
    try:
        st.run(f"kubectl -n {argocd.NAMESPACE} delete application quantzoo --wait=false")
        wait_for(all_gone, 300, interval=0.2, what="the TradingSystems to go")
        wait_for(lambda: operator.gone_at is not None, 300, interval=0.5, what="the operator to go")
    finally:
        operator.stop()
        engines.stop()
    assert max(gone.values()) <= operator.gone_at, "the operator went before its TradingSystems"
    events = json.loads(st.cd.kubectl("-n", NS, "get", "events", "-o", "json").stdout)["items"]
    halted = {
        e["involvedObject"]["name"]: e["message"] for e in events if e["reason"] == "HaltedBeforeDelete"
    }
    assert set(halted) == set(SYSTEMS), events
    print(f"finalizer: {halted}; engine states seen: {engines.seen}")
    # Argo CD deletes with foreground propagation: the garbage collector deletes the engine pods while the
    # finalizer runs, so it reaches each one live, or terminating, or finds it gone; the Event says which.
    outcomes = ("acknowledged by 1/1", "already terminating did not answer", "No engine replica was running")
    for message in halted.values():
        assert any(o in message for o in outcomes), message
    # Whichever came first, every engine halted: the finalizer's push or the engine's own watch of the
    # deletion. Read from each engine pod until it stopped answering: the last state it gave was HALTED.
    for system in SYSTEMS:
        assert engines.seen[system][-1] == "HALTED", (system, engines.seen[system])
    wait_for(
        lambda: st.cd.application("quantzoo") is None, 300, interval=1, what="the root Application to go"
    )
    # Argo CD never deletes a CRD when deleting an Application (controller shouldBeDeleted): TradingSystems
    # that other Applications or people manage survive the platform's removal.
    assert st.cd.kubectl("get", "crd", CRD, check=False).returncode == 0
