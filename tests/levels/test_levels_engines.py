"""One write halts many engines (issue #13): real engine processes watching the real API server (no
operator), each its own TradingSystem, the TradingHalts and (when it names one) its TradingAccount.

- a Desk halt halts the engines of its namespace and no other; a Firm halt halts every engine;
- a release at a lower level (the system's own, then the desk's) does not lift a higher kill;
- a GitOps revert of an engaged TradingHalt (re-applying the manifest as it is in git) is refused by the
  API server, and the engines stay halted;
- an account's kill switch halts only the engines of its systems.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.killswitch import engage_patch, kill_switch_of, release_patch_for
from quantzoo_api.levels import KillLevel, halt_body

from tests.faults.watching_engine import (
    SPEC,
    WatchingEngine,
    create_trading_system,
    start_watching_engine,
    wait_state,
)
from tests.levels.halts import (
    create_account,
    create_halt,
    delete_halt,
    engage_account,
    engage_halt,
    release_halt,
)

pytestmark = pytest.mark.slow

ENV = {"ENGINE_PROOF_TIMEOUT_SECONDS": "6", "ENGINE_WATCH_TIMEOUT_SECONDS": "3"}


def active(state: dict) -> bool:
    return state["trading_state"] == "ACTIVE"


def halted(state: dict) -> bool:
    return state["trading_state"] == "HALTED"


def holders(engine: WatchingEngine) -> list[str]:
    return [h["name"] for h in engine.state()["kill_switch"]["held_by"]]


@pytest.fixture
def engines() -> Iterator[list[WatchingEngine]]:
    started: list[WatchingEngine] = []
    try:
        yield started
    finally:
        for engine in started:
            engine.stop()


@pytest.fixture
def other_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def halts(kube_api: client.ApiClient) -> Iterator[list[str]]:
    """The TradingHalts a test creates (cluster-scoped: released and deleted after it)."""
    created: list[str] = []
    yield created
    for name in created:
        delete_halt(kube_api, name)


def _start(tmp_path: Path, cluster, namespace: str, name: str, engines: list, **spec) -> WatchingEngine:
    api = cluster.api_client()
    if spec:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingSystem", "metadata": {"name": name}}
        body["spec"] = {**SPEC, **spec}
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    else:
        create_trading_system(api, namespace, name)
    env = dict(ENV)
    if spec:  # the operator renders the spec into the engine's config file (accountRef is read at start)
        config = tmp_path / f"{namespace}-{name}.json"
        config.write_text(json.dumps({"namespace": namespace, "name": name, "spec": body["spec"]}))
        env["QUANTZOO_CONFIG"] = str(config)
    engine = start_watching_engine(tmp_path, cluster.kubeconfig, namespace, name, f"{namespace}-{name}", env)
    engines.append(engine)
    return engine


def test_one_write_halts_only_the_covered_engines_and_a_lower_release_lifts_no_higher_kill(
    cluster, kube_api, namespace, other_namespace, engines, halts, tmp_path: Path
) -> None:
    a1 = _start(tmp_path, cluster, namespace, "a1", engines)
    a2 = _start(tmp_path, cluster, namespace, "a2", engines)
    b1 = _start(tmp_path, cluster, other_namespace, "b1", engines)
    for engine in (a1, a2, b1):
        wait_state(engine, active, 20, "ACTIVE before any kill")

    desk = create_halt(kube_api, KillLevel.DESK, namespace)
    halts.append(desk)
    engage_halt(kube_api, desk)  # ONE write for the desk
    for engine in (a1, a2):
        wait_state(engine, halted, 5, "HALTED by the desk halt")
        assert holders(engine) == [f"Desk/{desk}"]
    assert active(b1.state()), "a desk halt of another namespace must not halt this engine"
    assert a1.place_order().status_code == 409

    # The system's own switch engaged then released: the desk still holds it.
    ts = client.CustomObjectsApi(kube_api)
    ts.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a1", engage_patch(reason="own"))
    wait_state(a1, lambda s: len(s["kill_switch"]["held_by"]) == 2, 5, "held by the desk and itself")
    own = kill_switch_of(ts.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a1"))
    release = release_patch_for(own, operator="levels-test", reason="own issue fixed")
    ts.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a1", release)
    wait_state(a1, lambda s: holders_of(s) == [f"Desk/{desk}"], 5, "the own release read")
    assert halted(a1.state()), "a release at the system level lifted the desk's kill"

    firm = create_halt(kube_api, KillLevel.FIRM)
    halts.append(firm)
    engage_halt(kube_api, firm)  # ONE write for the firm
    wait_state(b1, halted, 5, "HALTED by the firm halt")
    wait_state(a1, lambda s: holders_of(s) == [f"Firm/{firm}", f"Desk/{desk}"], 5, "firm first, then desk")

    release_halt(kube_api, desk)
    wait_state(a2, lambda s: holders_of(s) == [f"Firm/{firm}"], 5, "the desk release read")
    assert halted(a2.state()), "a release of the desk lifted the firm's kill"

    release_halt(kube_api, firm)
    for engine in (a1, a2, b1):
        wait_state(engine, active, 10, "ACTIVE once no level holds it")
    assert a1.place_order().status_code == 201


def holders_of(state: dict) -> list[str]:
    return [h["name"] for h in state["kill_switch"]["held_by"]]


def test_a_gitops_revert_of_an_engaged_halt_is_refused_and_the_engines_stay_halted(
    cluster, kube_api, namespace, engines, halts, tmp_path: Path
) -> None:
    engine = _start(tmp_path, cluster, namespace, "a1", engines)
    wait_state(engine, active, 20, "ACTIVE")
    desk = create_halt(kube_api, KillLevel.DESK, namespace)
    halts.append(desk)
    engage_halt(kube_api, desk)
    wait_state(engine, halted, 5, "HALTED by the desk halt")
    # The manifest as it is in git (released, no release record), applied as Argo CD applies it.
    manifest = tmp_path / "halt.json"
    in_git = halt_body(KillLevel.DESK, namespace)
    in_git["spec"]["killSwitch"] = {"engaged": False}
    manifest.write_text(json.dumps(in_git))
    applied = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=argocd",
        "-f",
        str(manifest),
        check=False,
    )
    assert applied.returncode != 0
    assert "release record naming the engagement" in applied.stderr
    assert halted(engine.state())
    assert holders_of(engine.state()) == [f"Desk/{desk}"]


def test_an_account_kill_halts_only_the_engines_of_its_systems(
    cluster, kube_api, namespace, engines, tmp_path: Path
) -> None:
    create_account(kube_api, namespace, "main")
    in_account = _start(tmp_path, cluster, namespace, "acct-a", engines, accountRef={"name": "main"})
    outside = _start(tmp_path, cluster, namespace, "solo", engines)
    for engine in (in_account, outside):
        wait_state(engine, active, 20, "ACTIVE")
    engage_account(kube_api, namespace, "main")
    wait_state(in_account, halted, 5, "HALTED by its account")
    assert holders_of(in_account.state()) == [f"Account/{namespace}/main"]
    assert active(outside.state())
