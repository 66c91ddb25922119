"""The operator writes which level holds each TradingSystem (issue #13), against the real API server:
status.killSwitch.heldBy (highest level first), the Halted condition naming the highest level, and the
TradingHalt's status.systems/halted. A real operator process, no engines (test_levels_engines has them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, watch
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.levels import HALT_PLURAL, KillLevel

from hack.devcluster.stack import start_operator
from tests.faults.watching_engine import SPEC
from tests.levels.halts import (
    create_account,
    create_halt,
    delete_halt,
    engage_account,
    engage_halt,
    release_halt,
)
from tests.operator.harness import FAST_ENV, release_finalizers, wait_for

pytestmark = pytest.mark.slow


def status_of(api: client.ApiClient, namespace: str, name: str) -> dict:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return obj.get("status") or {}


def held(api: client.ApiClient, namespace: str, name: str) -> tuple[list[str], str | None]:
    status = status_of(api, namespace, name)
    names = [h["name"] for h in (status.get("killSwitch") or {}).get("heldBy") or []]
    cond = next((c for c in status.get("conditions") or () if c["type"] == "Halted"), {})
    return names, cond.get("reason")


@pytest.fixture
def operator(cluster, kube_api, namespace) -> Iterator[None]:
    op = start_operator(cluster.kubeconfig, [namespace], FAST_ENV)
    try:
        yield
    finally:
        op.stop()
        release_finalizers(kube_api, namespace)


def test_status_names_the_levels_holding_each_system(cluster, kube_api, namespace, operator) -> None:
    custom = client.CustomObjectsApi(kube_api)
    create_account(kube_api, namespace, "main")
    for name, extra in (("s1", {"accountRef": {"name": "main"}}), ("s2", {})):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingSystem", "metadata": {"name": name}}
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body | {"spec": {**SPEC, **extra}}
        )
    desk = create_halt(kube_api, KillLevel.DESK, namespace)
    try:
        assert held(kube_api, namespace, "s2") == ([], None)  # never held: nothing written
        engage_halt(kube_api, desk)
        for name in ("s1", "s2"):
            wait_for(
                lambda n=name: held(kube_api, namespace, n) == ([f"Desk/{desk}"], "HeldByDesk"), 10, what=name
            )
        # The phase (and `kubectl get ts`) shows the desk's hold too. (s1 is Degraded, which outranks
        # Halted: its account's simulated broker cannot be shared.)
        try:
            wait_for(lambda: status_of(kube_api, namespace, "s2").get("phase") == "Halted", 10)
        except AssertionError:
            raise AssertionError(f"s2: {status_of(kube_api, namespace, 's2')}") from None
        halt = custom.get_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, desk)
        wait_for(
            lambda: (
                (custom.get_cluster_custom_object(GROUP, VERSION, HALT_PLURAL, desk).get("status") or {})
                == {"systems": 2, "halted": 2}
            ),
            10,
            what=f"the halt's status (was {halt.get('status')})",
        )
        engage_account(kube_api, namespace, "main")
        want = ([f"Desk/{desk}", f"Account/{namespace}/main"], "HeldByDesk")
        wait_for(lambda: held(kube_api, namespace, "s1") == want, 10, what="desk, then account")
        release_halt(kube_api, desk)
        wait_for(lambda: held(kube_api, namespace, "s2") == ([], "NotHalted"), 10, what="s2 released")
        wait_for(lambda: status_of(kube_api, namespace, "s2").get("phase") != "Halted", 10, what="s2 phase")
        want = ([f"Account/{namespace}/main"], "HeldByAccount")
        wait_for(lambda: held(kube_api, namespace, "s1") == want, 10, what="s1 still held by its account")
    finally:
        delete_halt(kube_api, desk)


def test_a_hold_shows_in_one_write_with_the_phase(cluster, kube_api, namespace, operator) -> None:
    """The version of a system that first names the desk holding it already shows phase Halted: the hold
    is one status write per system (before, the phase followed in a second write by the reconcile writer,
    after it had read the system again)."""
    custom = client.CustomObjectsApi(kube_api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingSystem", "metadata": {"name": "s1"}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body | {"spec": SPEC})
    wait_for(lambda: status_of(kube_api, namespace, "s1").get("phase") is not None, 10, what="a phase")
    desk = create_halt(kube_api, KillLevel.DESK, namespace)
    try:
        rv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "s1")["metadata"][
            "resourceVersion"
        ]
        engage_halt(kube_api, desk)
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=rv,
            field_selector="metadata.name=s1",
            timeout_seconds=10,
        )
        first = next(
            (
                ev["object"]
                for ev in stream
                if any(
                    h.get("name") == f"Desk/{desk}"
                    for h in ((ev["object"].get("status") or {}).get("killSwitch") or {}).get("heldBy") or ()
                )
            ),
            None,
        )
        assert first is not None, "no version of s1 named the desk within 10 s"
        assert first["status"].get("phase") == "Halted", first["status"]
    finally:
        release_halt(kube_api, desk)
        delete_halt(kube_api, desk)
