"""Least privilege: the operator's rules (charts/quantzoo/files/operator-rbac-rules.yaml, the one source
the chart renders) grant nothing it does not need, and are enough: the operator runs as a ServiceAccount
bound to exactly those rules, against the real API server with RBAC on, and does all of its work."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.clusters import Cluster
from tests.operator.harness import (
    TS,
    EngineFleet,
    finish,
    release_finalizers,
    running_with_standin,
    start_operator,
    wait_for,
)

RULES_FILE = (
    Path(__file__).resolve().parents[2] / "charts" / "quantzoo" / "files" / "operator-rbac-rules.yaml"
)


def rules() -> list[dict]:
    return yaml.safe_load(RULES_FILE.read_text())


def test_rules_grant_no_wildcards_and_no_dangerous_verbs() -> None:
    for rule in rules():
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key}: {rule}"
        assert not set(rule["verbs"]) & {"delete", "deletecollection", "escalate", "bind", "impersonate"}, (
            rule
        )
        assert "nonResourceURLs" not in rule


def test_secrets_are_never_listed_or_watched() -> None:
    secret_rules = [r for r in rules() if "secrets" in r["resources"]]
    assert secret_rules, "the operator creates the token Secrets"
    for rule in secret_rules:
        assert set(rule["verbs"]) <= {"get", "create"}, rule
        assert rule["resources"] == ["secrets"], "Secrets share a rule with nothing else"


def test_cluster_scoped_access_is_read_only() -> None:
    for rule in rules():
        if {"namespaces", "customresourcedefinitions"} & set(rule["resources"]):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


@pytest.fixture
def operator_identity(cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path):
    """A ServiceAccount bound to a ClusterRole of exactly the rules file; a kubeconfig acting as it."""
    if cluster.plane is None:
        pytest.skip("needs the test suite's own control plane (token kubeconfig)")
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    name = f"quantzoo-operator-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "quantzoo-operator"}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules()})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "quantzoo-operator", "namespace": namespace}],
        }
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token("quantzoo-operator", namespace, request).status.token
    kubeconfig = cluster.plane.kubeconfig_for_token(
        token, tmp_path / "operator.kubeconfig", user=f"system:serviceaccount:{namespace}:quantzoo-operator"
    )
    yield kubeconfig
    with contextlib.suppress(client.ApiException):
        rbac.delete_cluster_role_binding(name)
    with contextlib.suppress(client.ApiException):
        rbac.delete_cluster_role(name)


def test_the_operator_does_everything_with_only_these_rules(
    cluster: Cluster,
    operator_identity: Path,
    ts: TS,
    namespace: str,
    engines: EngineFleet,
    kube_api: client.ApiClient,
    request: pytest.FixtureRequest,
) -> None:
    # Sanity: the identity really is restricted (it cannot read Secrets cluster-wide).
    restricted = client.CoreV1Api(client.ApiClient(_configuration_for(operator_identity)))
    with pytest.raises(client.ApiException) as denied:
        restricted.list_secret_for_all_namespaces()
    assert denied.value.status == 403

    op = start_operator(
        cluster, [namespace], kubeconfig=operator_identity, extra_env={"POD_NAMESPACE": namespace}
    )
    try:
        engine = running_with_standin(ts, engines, namespace, "demo")
        ts.engage_acknowledged(namespace, "demo", reason="rbac drill", operator="grace", source="kubectl")
        assert engine.commands[-1].reason == "rbac drill"

        client.CoreV1Api(kube_api).delete_namespaced_service("demo-safety", namespace)
        wait_for(
            lambda: client.CoreV1Api(kube_api).read_namespaced_service("demo-safety", namespace),
            what="the Service restored",
        )
        ts.delete(namespace, "demo")
        wait_for(lambda: ts.get(namespace, "demo") is None, what="deletion through the finalizer")
        assert engine.commands[-1].source == "operator:finalizer"
        ts.wait_event(namespace, "demo", "HaltedBeforeDelete")

        log = op.log.read_text()
        for word in ("Forbidden", "forbidden", " 403"):
            assert word not in log, f"the operator hit a permission error:\n{op.tail(80)}"
    finally:
        op.stop()
        release_finalizers(kube_api, namespace)
        finish(op, request)


def _configuration_for(kubeconfig: Path) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return configuration
