"""Session-wide fixtures: one real control plane per test session (started lazily, only when a test asks
for it), the TradingSystem CRD installed in it, and a fresh namespace per test.

Point the same tests at a cluster you already have (kind, for example) with
`QUANTZOO_USE_EXISTING_CLUSTER=1 KUBECONFIG=/path/to/kubeconfig`: nothing is started or stopped then, and
the CRD is applied to that cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from hack.devcluster import controlplane, leaks, levels_rbac

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "crds"  # TradingSystem, TradingAccount, TradingHalt
USE_EXISTING = os.environ.get("QUANTZOO_USE_EXISTING_CLUSTER") == "1"


@dataclass
class Cluster:
    """What a test needs to talk to the control plane as admin (and to inject faults when it is ours)."""

    kubeconfig: Path
    bin_dir: Path
    plane: controlplane.ControlPlane | None  # None when the cluster is not ours

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        kubectl = self.bin_dir / "kubectl" if (self.bin_dir / "kubectl").exists() else Path("kubectl")
        return subprocess.run(
            [str(kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
        )

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def env(self) -> dict[str, str]:
        """Environment for a child process (operator, engine, safety) that talks to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def pytest_report_header(config: pytest.Config) -> list[str]:
    if USE_EXISTING:
        return [
            f"kubernetes: existing cluster from KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')}"
        ]
    try:
        bin_dir = controlplane.build_binaries()
    except Exception as exc:  # the fixture reports it properly; the header only informs
        return [f"kubernetes: control-plane binaries unavailable ({exc})"]
    plane = controlplane.ControlPlane(workdir=Path(tempfile.gettempdir()), bin_dir=bin_dir)
    v = plane.versions()
    return [f"kubernetes: {v['kube-apiserver']} | {v['etcd']} | {v['kwok']} (binaries in {bin_dir})"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def _install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    names = [f"crd/{load_yaml(f)['metadata']['name']}" for f in sorted(CRD_DIR.glob("*.yaml"))]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    # Engines (as their ServiceAccounts) read the TradingHalts: the binding a chart install has.
    helm = (
        cluster.bin_dir / "helm"
        if (cluster.bin_dir / "helm").exists()
        else Path(shutil.which("helm") or "helm")
    )
    levels_rbac.install(cluster.kubectl, helm)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if USE_EXISTING:
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        kubectl = shutil.which("kubectl")
        c = Cluster(kubeconfig=kubeconfig, bin_dir=Path(kubectl).parent if kubectl else Path("."), plane=None)
        _install_crd(c)
        recorder = leaks.ClusterRecorder(kubeconfig).start()  # for tests/zz_leaks
        try:
            yield c
        finally:
            recorder.stop()
        return
    workdir = Path(tempfile.mkdtemp(prefix="quantzoo-cp-"))
    plane = controlplane.start(workdir)
    try:
        c = Cluster(kubeconfig=plane.kubeconfig, bin_dir=plane.bin_dir, plane=plane)
        _install_crd(c)
        recorder = leaks.ClusterRecorder(plane.kubeconfig).start()  # for tests/zz_leaks
        try:
            yield c
        finally:
            recorder.stop()
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_config(cluster: Cluster) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def kube_api(cluster: Cluster) -> client.ApiClient:
    return cluster.api_client()


@pytest.fixture
def namespace(cluster: Cluster, kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards (without waiting for it to finish)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount controller creates `default` asynchronously; pods need it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException:
            time.sleep(0.1)
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())
