"""A real Argo CD (v2.14.21: application controller, repo server, redis) syncs QuantZoo from a git repository
on this machine into the suite's control plane, installed the way argocd/README.md says.

Stand-ins, and what they do not model: kwok runs no containers, so the operator Deployment that Argo CD
installs is "Available" without running anything; the operator runs as a local process that starts when that
Deployment becomes Available and stops when it is being deleted (tests/argocd/gitops.py OperatorFollower).
The engine pods are kwok pods too: the pod runner (hack/devcluster/podrunner.py) runs each one's real
engine as a local process (simulated broker and feed), so pushes and the finalizer's halt reach the real
engine. No argocd-server runs (no UI/API/SSO): the tests read Argo CD's verdicts from the
Application objects the controller writes.
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
from kubernetes import client

from hack.devcluster import argocd
from hack.devcluster.podrunner import PodRunner, wait_for
from tests.argocd.gitops import PLACEHOLDER_URL, Engines, GitRepo, OperatorFollower, readme_commands

REPO = Path(__file__).resolve().parents[2]
CRD = "tradingsystems.trading.quantzoo.io"
SYSTEMS = ("demo", "momentum-us")
NS = "trading"
INSTALL_SECTION = "## Installing on an existing Argo CD"
CEL_RELEASE = "an engaged kill switch is released only with a release record naming the engagement it ends"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Stage:
    cd: argocd.ArgoCD
    repo: GitRepo
    follower: OperatorFollower
    engines: Engines
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

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.repo.work,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )


def _ts_exists_anywhere(stage_kubectl) -> bool:
    out = stage_kubectl("get", "tradingsystems", "-A", "-o", "name", check=False)
    return out.returncode == 0 and bool(out.stdout.strip())


@pytest.fixture(scope="module")
def stage(cluster, kube_api, tmp_path_factory) -> Iterator[Stage]:
    bin_dir = argocd.build_binaries()
    root = tmp_path_factory.mktemp("argocd")
    cd = argocd.ArgoCD(
        root / "argocd", bin_dir, cluster.kubeconfig, cluster.bin_dir / "kubectl", cluster.bin_dir
    )
    # The suite installs the TradingSystem CRD for every test; take it away (when no TradingSystem is left)
    # so that it is Argo CD that installs it here. Put back at teardown.
    removed = not _ts_exists_anywhere(cd.kubectl)
    if removed:
        cd.kubectl("delete", "crd", CRD, "--ignore-not-found", "--timeout=120s")
    cd.start()
    assert cd.version() == f"argocd: v{argocd.VERSION}+unknown"
    follower = OperatorFollower(cluster.kubeconfig, client.AppsV1Api(kube_api)).start()
    engines = Engines(PodRunner(cluster.plane, cluster.kubeconfig, kube_api), client.CoreV1Api(kube_api))
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{cluster.bin_dir}:{os.environ.get('PATH', '')}",
    }
    st = Stage(cd, GitRepo(root / "git"), follower, engines, kube_api, time.time(), removed, env)
    try:
        yield st
    finally:
        follower.stop()
        engines.stop_all()
        for app in ("quantzoo-trading-systems", "quantzoo-platform", "quantzoo"):
            cd.kubectl(
                "-n", argocd.NAMESPACE, "patch", "application", app, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
        cd.stop()
        for ns in (NS, "quantzoo-system"):
            cd.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
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
    """argocd/README.md's install commands, run as shown (the repository URL filled in)."""
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
    for system in SYSTEMS:
        if system not in stage.engines.running:
            stage.engines.attach(NS, system)
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
    assert st.follower.started_at is not None
    for system in SYSTEMS:
        ts = st.ts(system)
        assert ts is not None
        assert _time(ts["metadata"]["creationTimestamp"]) >= systems_created
        assert _time(ts["metadata"]["creationTimestamp"]) >= int(st.follower.started_at)
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
    wait_for(lambda: st.engines.state("momentum-us")["trading_state"] == "HALTED", 30, what="engine HALTED")
    # ignoreDifferences: the engaged switch is not drift.
    assert st.resource("quantzoo-trading-systems", "TradingSystem", "momentum-us")["status"] == "Synced"
    assert st.app("quantzoo-trading-systems")["status"]["health"]["status"] == "Suspended"


def test_selfheal_reverting_an_engaged_systems_manifest_does_not_resume_trading(installed: Stage) -> None:
    st = installed
    system, path = "demo", "argocd/tradingsystems/demo.yaml"
    _engage(st, system, "fat finger on AAPL", "erin")
    suspended = {"status": "Suspended", "message": "Kill switch engaged (Halt) by erin: fat finger on AAPL"}
    wait_for(lambda: _ts_health(st, system) == suspended, 60, interval=1, what=f"Argo CD to show {suspended}")
    wait_for(lambda: st.engines.state(system)["trading_state"] == "HALTED", 30, what="engine HALTED")

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
    assert st.engines.state(system)["trading_state"] == "HALTED"
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

    st.run(f"kubectl -n {argocd.NAMESPACE} delete application quantzoo --wait=false")
    wait_for(all_gone, 300, interval=0.2, what="the TradingSystems to go")
    wait_for(lambda: st.follower.stopped_at is not None, 300, interval=0.5, what="the operator to go")
    assert max(gone.values()) <= st.follower.stopped_at, "the operator went before its TradingSystems"
    events = json.loads(st.cd.kubectl("-n", NS, "get", "events", "-o", "json").stdout)["items"]
    halted = {
        e["involvedObject"]["name"]: e["message"] for e in events if e["reason"] == "HaltedBeforeDelete"
    }
    assert set(halted) == set(SYSTEMS), events
    # Argo CD deletes with foreground propagation: the garbage collector deletes the engine pods while the
    # finalizer runs, so it reaches each one live, or terminating, or finds it gone (kwok's simulated node
    # drops a deleted pod within a second); the Event says which.
    outcomes = ("acknowledged by 1/1", "already terminating did not answer", "No engine replica was running")
    for message in halted.values():
        assert any(o in message for o in outcomes), message
    # Whichever came first, every engine halted: the finalizer's push or the engine's own watch of the
    # deletion. (The stand-in process outlives its simulated pod, so its state can still be read here.)
    for system in SYSTEMS:
        assert st.engines.state(system)["trading_state"] == "HALTED", system
    wait_for(
        lambda: st.cd.application("quantzoo") is None, 300, interval=1, what="the root Application to go"
    )
    # Argo CD never deletes a CRD when deleting an Application (controller shouldBeDeleted): TradingSystems
    # that other Applications or people manage survive the platform's removal.
    assert st.cd.kubectl("get", "crd", CRD, check=False).returncode == 0
