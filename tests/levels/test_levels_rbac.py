"""Engage vs release at every level (issue #13), against the real API server with impersonated users: the
chart's -killer and -releaser ClusterRoles and its kill-release ValidatingAdmissionPolicy (rendered by the
real helm from charts/quantzoo, applied as they are).

- a "killer" engages a TradingSystem, a TradingAccount and a TradingHalt (creating it on first use), and
  cannot release any of them (refused by the API server, naming the right it lacks), nor delete an
  engaged halt;
- a "releaser" releases them;
- the engine's ServiceAccount reads the TradingHalts (the -halt-reader binding) and cannot write them.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from quantzoo_api import GROUP, PLURAL
from quantzoo_api.accounts import ACCOUNT_PLURAL
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for
from quantzoo_api.levels import HALT_PLURAL, KillLevel, halt_body

from tests.clusters import REPO, Cluster
from tests.faults.watching_engine import create_trading_system
from tests.levels.halts import create_account, delete_halt

RELEASE = "levels-rbac"  # helm release name: objects are named levels-rbac-quantzoo-*
PREFIX = f"{RELEASE}-quantzoo"
TEMPLATES = ("templates/kill-levels-rbac.yaml", "templates/kill-release-policy.yaml")


def render(cluster: Cluster) -> list[dict]:
    args = [str(cluster.bin_dir / "helm"), "template", RELEASE, str(REPO / "charts" / "quantzoo")]
    args += ["--kube-version", "1.34.0"]
    for template in TEMPLATES:
        args += ["--show-only", template]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def chart_policy(cluster: Cluster) -> Iterator[list[dict]]:
    docs = render(cluster)
    bindings = [
        {"kind": "User", "name": "kim", "role": f"{PREFIX}-killer"},
        {"kind": "User", "name": "rita", "role": f"{PREFIX}-releaser"},
    ]
    for b in bindings:
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{RELEASE}-{b['name']}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": b["role"],
                },
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": b["kind"], "name": b["name"]}],
            }
        )
    text = "\n---\n".join(json.dumps(d) for d in docs)
    cluster.kubectl("apply", "-f", "-", input=text)
    try:
        yield docs
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=text, check=False)


def kubectl_as(cluster: Cluster, user: str, *args: str) -> subprocess.CompletedProcess:
    return cluster.kubectl(f"--as={user}", *args, check=False)


def patch_as(cluster: Cluster, user: str, target: list[str], patch: dict) -> subprocess.CompletedProcess:
    return kubectl_as(cluster, user, "patch", *target, "--type=merge", "-p", json.dumps(patch))


def current(cluster: Cluster, target: list[str]) -> dict:
    return kill_switch_of(json.loads(cluster.kubectl("get", *target, "-o", "json").stdout))


def release_of(cluster: Cluster, target: list[str]) -> dict:
    return release_patch_for(current(cluster, target), operator="drill", reason="drill over")


def wait_policy_in_force(cluster: Cluster, target: list[str]) -> None:
    """A VAP is loaded asynchronously: dry-run a release as the killer until it is refused."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = patch_as(cluster, "kim", [*target, "--dry-run=server"], release_of(cluster, target))
        if probe.returncode != 0 and "right to release" in probe.stderr:
            return
        time.sleep(0.3)
    raise AssertionError(f"the kill-release policy is not in force: {probe.stderr or probe.stdout}")


def test_a_killer_engages_every_level_and_cannot_release_a_releaser_can(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, chart_policy: list[dict], tmp_path: Path
) -> None:
    create_trading_system(kube_api, namespace, "demo")
    create_account(kube_api, namespace, "main")
    halt = halt_body(KillLevel.DESK, namespace)
    halt_file = tmp_path / "halt.json"
    halt_file.write_text(json.dumps(halt))
    # The killer creates the desk's halt on first use, as `kubectl quantzoo kill --namespace` does.
    created = kubectl_as(cluster, "kim", "create", "-f", str(halt_file))
    assert created.returncode == 0, created.stderr
    try:
        targets = [
            [f"{PLURAL}.{GROUP}", "demo", "-n", namespace],
            [f"{ACCOUNT_PLURAL}.{GROUP}", "main", "-n", namespace],
            [f"{HALT_PLURAL}.{GROUP}", halt["metadata"]["name"]],
        ]
        for target in targets:
            engaged = patch_as(cluster, "kim", target, engage_patch(reason="drill", operator="kim"))
            assert engaged.returncode == 0, engaged.stderr
            assert current(cluster, target)["engaged"] is True
        wait_policy_in_force(cluster, targets[0])
        for target in targets:
            refused = patch_as(cluster, "kim", target, release_of(cluster, target))
            assert refused.returncode != 0, target
            assert "needs the right to release it" in refused.stderr
            assert "kim may engage, not release" in refused.stderr
            assert current(cluster, target)["engaged"] is True
        # Nor can an engaged halt be deleted (not even by an admin): release it first.
        gone = cluster.kubectl("delete", *targets[2], check=False)
        assert gone.returncode != 0
        assert "release it (naming its engagement) before deleting it" in gone.stderr
        for target in targets:
            released = patch_as(cluster, "rita", target, release_of(cluster, target))
            assert released.returncode == 0, released.stderr
            assert current(cluster, target)["engaged"] is False
        # Engage again after a release: still the killer's right.
        again = patch_as(cluster, "kim", targets[2], engage_patch(reason="again", operator="kim"))
        assert again.returncode == 0, again.stderr
    finally:
        delete_halt(kube_api, halt["metadata"]["name"])


def test_engines_read_the_halts_and_cannot_write_them(
    cluster: Cluster, namespace: str, chart_policy: list[dict]
) -> None:
    sa = f"system:serviceaccount:{namespace}:{uuid.uuid4().hex[:8]}-engine"
    groups = ["--as-group=system:serviceaccounts", f"--as-group=system:serviceaccounts:{namespace}"]
    verbs = {"list": "yes", "watch": "yes", "get": "yes", "patch": "no", "create": "no"}
    for verb, expected in verbs.items():
        answer = cluster.kubectl(
            "auth", "can-i", verb, f"{HALT_PLURAL}.{GROUP}", f"--as={sa}", *groups, check=False
        )
        assert answer.stdout.strip() == expected, (verb, answer.stdout, answer.stderr)
