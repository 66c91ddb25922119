"""Session-wide fixtures: one real control plane per test session (started lazily, only when a test asks
for it), the TradingSystem CRD installed in it, and a fresh namespace per test; and one real single-node
cluster per session (`real_cluster`, hack/devcluster/node.py: containerd, kubelet, kube-proxy, CoreDNS,
kube-router's NetworkPolicy controller), started lazily for the tests on real pods (tests/pods) and Argo
CD's (tests/argocd), torn down at the end, also on failure or Ctrl-C. It needs root and the node's Debian
packages (`make node-deps`); without them those tests skip with the reason, unless CI is set (then they fail).

Point the same tests at a cluster you already have (kind, for example) with
`QUANTZOO_USE_EXISTING_CLUSTER=1 KUBECONFIG=/path/to/kubeconfig`: nothing is started or stopped then, and
the CRD is applied to that cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from hack.devcluster import controlplane, leaks, node
from tests import session_order
from tests.clusters import USE_EXISTING, Cluster, install_crds


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
    items[:] = session_order.real_node_tests_last(items)


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[node.RealCluster]:
    problem = node.missing_prerequisites()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with node.real_cluster(tmp_path_factory.mktemp("real-node")) as real:
        yield real


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if USE_EXISTING:
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        kubectl = shutil.which("kubectl")
        c = Cluster(kubeconfig=kubeconfig, bin_dir=Path(kubectl).parent if kubectl else Path("."), plane=None)
        install_crds(c)
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
        install_crds(c)
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
