"""The kill-switch contract end to end on real pods: the chart's operator as its Deployment's pod, the
engine and safety pods it creates on the real node (containerd + runc, NetworkPolicies enforced).

The kill patched and acknowledged through the operator's push across the engine's NetworkPolicy, the
runbook's activate (its public /status tells nothing of the reason) and release, the operator's Deployment
scaled to zero (only the engine pod's own watch carries the kill), the API server stopped (the safety pod
halts the engine pod directly over the pod network), bad tokens and bodies that change nothing, concurrent
activations, and a GitOps revert of an engaged switch refused. The engine's container killed while
engaged comes back halted in test_real_pods.py.

Each test: its own TradingSystem in its own namespace (restricted profile), deleted at the end.
"""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from kubernetes import client, config
from quantzoo_api.killswitch import engage_patch

from hack.devcluster import node, podaddress
from tests.pods import realpods
from tests.pods.realpods import OPERATOR_NS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPEC = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 11, "intervalSeconds": 0.2},
    "risk": {"staleDataSeconds": 30},
}
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"


class Stack:
    """One TradingSystem on real pods: its engine and safety at their pod addresses."""

    def __init__(self, cluster: node.RealCluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.engine: podaddress.PodAddress | None = None
        self.safety: podaddress.PodAddress | None = None

    def kubectl_json(self, *args: str) -> dict:
        return realpods.kubectl_json(self.cluster, "-n", self.namespace, *args)

    def get(self) -> dict:
        return self.kubectl_json("get", "ts", self.name)

    def patch(self, patch: dict) -> None:
        self.cluster.plane.kubectl(
            "-n", self.namespace, "patch", "ts", self.name, "--type=merge", "-p", json.dumps(patch)
        )

    def engine_state(self) -> dict:
        assert self.engine is not None
        return httpx.get(self.engine.url + "/state", timeout=5).json()

    def halted(self) -> bool:
        state = self.engine_state()
        return state["trading_state"] == "HALTED" and state["kill_switch"]["engaged"]

    def acknowledged(self) -> dict | None:
        ks = (self.get().get("status") or {}).get("killSwitch") or {}
        acks = ks.get("acknowledgements") or []
        return ks if ks.get("engaged") and acks and all(a.get("engaged") for a in acks) else None

    def safety_headers(self) -> dict[str, str]:
        assert self.safety is not None
        return {"Authorization": f"Bearer {self.safety.secret('SAFETY_API_TOKEN')}"}

    def place_order(self, symbol: str, side: str, quantity: float, **extra: object) -> httpx.Response:
        assert self.engine is not None
        headers = {"Authorization": f"Bearer {self.engine.secret('ENGINE_ADMIN_TOKEN')}"}
        body = {"symbol": symbol, "side": side, "quantity": quantity, **extra}
        return httpx.post(self.engine.url + "/orders", json=body, headers=headers, timeout=10)


@pytest.fixture
def stack(release: node.RealCluster) -> Iterator[Stack]:
    ns = f"ks-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    s = Stack(release, ns, "ks")
    image = {"image": release.node.app_image, "imagePullPolicy": "Never"}
    ts = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": s.name, "namespace": ns},
        "spec": {**SPEC, "engine": image, "safety": image},
    }
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(ts))
    try:
        selector = f"trading.quantzoo.io/system={s.name},app.kubernetes.io/component="
        core = client.CoreV1Api(s.api)
        for component, port in (("engine", 8001), ("safety", 8888)):
            pod = realpods.one_ready_pod(release, ns, selector + component, 240)
            v1pod = core.read_namespaced_pod(pod["metadata"]["name"], ns)
            setattr(s, component, podaddress.of_pod(s.api, release.plane, v1pod, port))
        realpods.wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", 60, "engine ACTIVE")
        yield s
    finally:
        # Deleted while the operator runs, so its finalizer lets the namespace go.
        release.plane.kubectl("-n", ns, "delete", "ts", s.name, "--timeout=90s", check=False)
        release.plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_patch_halts_cancels_flattens_and_is_acknowledged(stack):
    assert stack.place_order("AAPL", "buy", 10).status_code == 201
    price = {r["symbol"]: r for r in httpx.get(stack.engine.url + "/symbols/list", timeout=5).json()}
    limit = round(float(price["MSFT"]["last_price"]) * 0.97, 2)
    resting = stack.place_order("MSFT", "buy", 1, type="limit", limit_price=limit)
    assert resting.status_code == 201, resting.text
    stack.patch(
        {
            "spec": {
                "killSwitch": {"engaged": True, "closePositions": True, "reason": "e2e", "operator": "alice"}
            }
        }
    )
    realpods.wait_for(stack.halted, 15, "engine halted")
    refused = stack.place_order("AAPL", "buy", 1)
    assert 400 <= refused.status_code < 500, refused.text
    assert "kill" in refused.text.lower() or "halt" in refused.text.lower()
    realpods.wait_for(lambda: stack.engine_state()["orders"]["working"] == 0, 15, "working orders cancelled")
    positions = httpx.get(stack.engine.url + "/positions/current", timeout=5).json()["positions"]
    assert all(float(p["quantity"]) == 0 for p in positions), positions
    # The acknowledgement is the operator pod's push answered by the engine pod, across its NetworkPolicy.
    ks = realpods.wait_for(stack.acknowledged, 30, "status acknowledgement")
    assert ks["acknowledgements"][0]["replica"].endswith("-engine-0")
    assert ks["acknowledgements"][0]["latencyMs"] >= 0
    assert ks["by"] == "alice"
    conditions = {c["type"]: c for c in stack.get()["status"]["conditions"]}
    assert conditions["KillSwitchEngaged"]["status"] == "True"


def test_runbook_activate_halts_and_deactivate_resumes(stack):
    resp = httpx.post(
        stack.safety.url + "/kill-switch/activate",
        headers={**stack.safety_headers(), "Content-Type": "application/json"},
        content=(
            '{"reason": "Emergency stop - runaway trading", "close_positions": true, "operator": "YOUR_NAME"}'
        ),
        timeout=20,
    )
    assert resp.status_code == 200, resp.text
    realpods.wait_for(stack.halted, 15, "engine halted")
    ks = stack.get()["spec"]["killSwitch"]
    assert (ks["engaged"], ks["operator"], ks["source"]) == (True, "YOUR_NAME", "safety-api")
    realpods.wait_for(stack.acknowledged, 30, "status acknowledgement")
    public = httpx.get(stack.safety.url + "/status", timeout=5).json()
    assert public["kill_switch_engaged"] is True
    assert "Emergency" not in json.dumps(public)  # unauthenticated: the reason is not told
    resp = httpx.post(
        stack.safety.url + "/kill-switch/deactivate",
        headers=stack.safety_headers(),
        json={"operator": "Your Name"},
        timeout=20,
    )
    assert resp.status_code == 200, resp.text
    ks = stack.get()["spec"]["killSwitch"]
    assert (ks["engaged"], ks["release"]["operator"]) == (False, "Your Name")
    realpods.wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", 30, "trading resumed")
    assert stack.place_order("AAPL", "buy", 1).status_code == 201


def test_operator_scaled_to_zero_kill_still_reaches_the_engine(stack, release):
    scale = ("-n", OPERATOR_NS, "scale", "deployment", "-l", OPERATOR_SELECTOR)
    release.plane.kubectl(*scale, "--replicas=0")
    try:
        realpods.wait_for(
            lambda: not realpods.pods(release, OPERATOR_NS, OPERATOR_SELECTOR), 60, "operator pod gone"
        )
        stack.patch(
            {"spec": {"killSwitch": {"engaged": True, "reason": "operator is down", "operator": "bob"}}}
        )
        # Only the engine pod's own watch of its TradingSystem can carry this.
        realpods.wait_for(stack.halted, 20, "engine halted without the operator")
    finally:
        release.plane.kubectl(*scale, "--replicas=1")
        realpods.one_ready_pod(release, OPERATOR_NS, OPERATOR_SELECTOR, 120)
    realpods.wait_for(stack.acknowledged, 60, "acknowledgement once the operator is back")


def test_apiserver_down_the_safety_pod_halts_the_engine_pod_directly(stack, release):
    headers = stack.safety_headers()  # read while the API server is up
    release.plane.stop_apiserver()
    try:
        resp = httpx.post(
            stack.safety.url + "/kill-switch/activate",
            headers=headers,
            json={"reason": "apiserver down", "close_positions": False, "operator": "carol"},
            timeout=30,
        )
        assert resp.status_code in (200, 202), resp.text
        assert "unreachable" in resp.text.lower()
        state = stack.engine_state()
        assert state["trading_state"] == "HALTED", state
        assert "apiserver down" in (state["kill_switch"]["reason"] or ""), state
    finally:
        release.plane.start_apiserver()
    # Once the API server is back, the engine stays halted (the halt reaches the source of truth or holds).
    realpods.wait_for(lambda: stack.get()["metadata"]["name"], 60, "the API server answers")
    assert stack.engine_state()["trading_state"] == "HALTED"


def test_bad_input_changes_nothing_concurrent_activations_agree_and_a_gitops_revert_is_refused(stack):
    url = stack.safety.url
    wrong = {"Authorization": "Bearer not-the-token"}
    body = {"reason": "x", "close_positions": False, "operator": "mallory"}
    assert httpx.post(url + "/kill-switch/activate", json=body, timeout=5).status_code == 401
    assert httpx.post(url + "/kill-switch/activate", json=body, headers=wrong, timeout=5).status_code == 401
    for bad in ('{"reason": "x"', '{"reason": "x", "operator": "m", "close_positions": "yes"}', "[]"):
        r = httpx.post(
            url + "/kill-switch/activate",
            content=bad,
            headers={**stack.safety_headers(), "Content-Type": "application/json"},
            timeout=5,
        )
        assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
    r = httpx.post(stack.engine.url + "/admin/kill-switch", json={"engaged": True}, headers=wrong, timeout=5)
    assert r.status_code == 401
    assert "not-the-token" not in r.text
    assert stack.get()["spec"]["killSwitch"]["engaged"] is False
    assert stack.engine_state()["trading_state"] == "ACTIVE"

    def activate(i: int) -> int:
        return httpx.post(
            url + "/kill-switch/activate",
            headers=stack.safety_headers(),
            json={"reason": f"concurrent {i}", "close_positions": False, "operator": f"op{i}"},
            timeout=30,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(activate, range(8)))
    assert all(c == 200 for c in codes), codes
    ks = stack.get()["spec"]["killSwitch"]
    assert ks["engaged"] is True
    assert ks["reason"].startswith("concurrent ")
    realpods.wait_for(stack.halted, 15, "engine halted")
    stack.patch(engage_patch(reason="again", operator="x", source="kubectl"))
    assert stack.halted()

    # Argo CD's server-side apply of the manifest from git (no engaged switch) must not resume trading.
    manifest = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": stack.name, "namespace": stack.namespace},
        "spec": {**SPEC, "killSwitch": {"engaged": False}},
    }
    res = stack.cluster.plane.kubectl(
        *("apply", "--server-side", "--force-conflicts", "--field-manager=argocd-controller", "-f", "-"),
        input=json.dumps(manifest),
        check=False,
    )
    assert res.returncode != 0
    assert "release record" in res.stderr
    assert stack.get()["spec"]["killSwitch"]["engaged"] is True
    assert stack.halted()
