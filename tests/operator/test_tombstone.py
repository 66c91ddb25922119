"""Issue #15, finding 6: a TradingSystem deleted while engaged and created again (kubectl replace --force,
Argo CD's Replace=true, prune then re-add) does not trade until someone releases it. Against the real
API server and the operator process: the finalizer arms a tombstone ConfigMap (not owned by the
TradingSystem), the create re-engages the new object BEFORE its engine StatefulSet exists (compared by
etcd revision), and only a release of the live object disarms the tombstone."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, watch
from quantzoo_api import GROUP, PLURAL, VERSION
from quantzoo_api.killswitch import kill_switch_of, release_patch_for

from tests.operator.harness import (
    TS,
    EngineFleet,
    OperatorProcess,
    attach_standin,
    running_with_standin,
    wait_for,
)

TOMBSTONE = "demo-kill-tombstone"


class FirstSeen(threading.Thread):
    """The etcd revision at which something first appeared in a watch stream (started before it could)."""

    def __init__(self, stream_fn: Any, match: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.stream_fn, self.match, self.kwargs = stream_fn, match, kwargs
        self.revision: int | None = None
        self.watch = watch.Watch()
        self.started_watching = threading.Event()

    def run(self) -> None:
        self.started_watching.set()
        for event in self.watch.stream(self.stream_fn, timeout_seconds=60, **self.kwargs):
            obj = event["object"]
            meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
            if self.match(event["type"], obj):
                self.revision = int(
                    meta["resourceVersion"] if isinstance(obj, dict) else meta["resource_version"]
                )
                self.watch.stop()
                return


def _tombstone(kube_api: client.ApiClient, namespace: str) -> dict[str, str] | None:
    try:
        return client.CoreV1Api(kube_api).read_namespaced_config_map(TOMBSTONE, namespace).data
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_delete_and_recreate_while_engaged_stays_halted_until_released(
    operator: OperatorProcess, ts: TS, namespace: str, engines: EngineFleet, kube_api: client.ApiClient
) -> None:
    running_with_standin(ts, engines, namespace, "demo")
    ts.engage_acknowledged(namespace, "demo", reason="runaway algo", operator="alice", mode="ReduceOnly")

    # kubectl replace --force: delete, then create the manifest from git (no kill switch in it).
    ts.delete(namespace, "demo")
    wait_for(lambda: ts.get(namespace, "demo") is None, what="the TradingSystem to go")
    data = wait_for(lambda: _tombstone(kube_api, namespace), what="the tombstone")
    assert data["armed"] == "true"
    custom, apps = client.CustomObjectsApi(kube_api), client.AppsV1Api(kube_api)
    wait_for(lambda: not apps.list_namespaced_stateful_set(namespace).items, 60, what="the old engine to go")

    engaged_seen = FirstSeen(
        custom.list_namespaced_custom_object,
        lambda _t, o: o["metadata"]["name"] == "demo" and kill_switch_of(o).get("engaged"),
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural=PLURAL,
    )
    engine_created = FirstSeen(
        apps.list_namespaced_stateful_set,
        lambda t, o: t == "ADDED" and o.metadata.name == "demo-engine",
        namespace=namespace,
    )
    for w in (engaged_seen, engine_created):
        w.start()
        w.started_watching.wait(5)
    ts.create(namespace, "demo", {"symbols": ["AAPL", "MSFT"], "killSwitch": {"engaged": False}})

    ks = wait_for(lambda: kill_switch_of(ts.get(namespace, "demo")) or None, what="the new object")
    ks = wait_for(
        lambda: (k := kill_switch_of(ts.get(namespace, "demo"))).get("engaged") and k, what="re-engaged"
    )
    assert ks["source"] == "operator:tombstone"
    assert ks["mode"] == "ReduceOnly"  # the deleted object's incident, carried over
    assert "runaway algo" in ks["reason"]
    wait_for(lambda: engine_created.revision is not None, what="the engine StatefulSet")
    assert engaged_seen.revision is not None
    assert engaged_seen.revision < engine_created.revision, "the engine existed before the re-engage"

    # Only a release of the live object ends it, and disarms the tombstone.
    engine = attach_standin(ts, engines, namespace, "demo")
    ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "True", reason="Acknowledged")
    assert engine.commands[-1].engaged is True
    ts.patch(namespace, "demo", release_patch_for(ks, operator="bob", reason="root cause fixed"))
    wait_for(lambda: (_tombstone(kube_api, namespace) or {}).get("armed") == "false", what="disarmed")
    ts.wait_condition(namespace, "demo", "KillSwitchEngaged", "False", reason="Released")
