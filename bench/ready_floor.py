"""The floor for "all Ready" in the scale benchmark: the same N TradingSystems and the same children,
made Ready by the cluster alone, with no operator.

In a fresh namespace: create the N TradingSystems (the same burst as the operator's run), then, from a
pool of `workers` threads (the operator's own reconcile pool is 8), create each system's two token
Secrets and server-side apply the children the operator's builders render for it (non-workloads first,
then the StatefulSet and the Deployment, as reconcile does). A system counts Ready when its engine
StatefulSet has a ready replica and its safety Deployment an available one (what the operator's Ready
condition waits for), seen on watches of the two kinds. What this leaves out, so what the operator
adds above it: status writes, Events of its own, kopf's annotation patches, its reads, and its own CPU
on the same 2 cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from quantzoo_api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from quantzoo_operator import names
from quantzoo_operator.builders import BuildOptions, System, admin_secret, build_children
from quantzoo_operator.kube import APPLY_PATCH, object_path
from quantzoo_operator.workloads import WORKLOAD_KINDS

FIELD_MANAGER = "scale-bench-floor"


class _ReadyWatch(threading.Thread):
    """First time each workload of a kind is ready (monotonic), from one watch of the namespace."""

    def __init__(self, lister: Callable[..., Any], namespace: str, ready: Callable[[Any], bool]) -> None:
        super().__init__(daemon=True)
        self.lister, self.namespace, self.ready = lister, namespace, ready
        self.hits: dict[str, float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                for ev in watch.Watch().stream(self.lister, self.namespace, timeout_seconds=30):
                    obj = ev["object"]
                    if obj.metadata.name not in self.hits and self.ready(obj):
                        self.hits[obj.metadata.name] = time.monotonic()
                    if self.stop_flag.is_set():
                        return
            except Exception:  # a dropped stream: watch again (the hits so far stay)
                time.sleep(0.2)


def _sts_ready(sts: Any) -> bool:
    return bool(sts.status and (sts.status.ready_replicas or 0) >= 1)


def _deploy_ready(deploy: Any) -> bool:
    return bool(deploy.status and (deploy.status.available_replicas or 0) >= 1)


def measure(run: Any, *, spec: dict[str, Any], workers: int = 8) -> dict[str, Any]:
    """`run`: a scale_bench ScaleRun whose namespace exists and that started no operator."""
    from bench.scale_bench import count_requests, percentiles, request_delta

    apps = client.AppsV1Api(run.api)
    watches = [
        _ReadyWatch(apps.list_namespaced_stateful_set, run.namespace, _sts_ready),
        _ReadyWatch(apps.list_namespaced_deployment, run.namespace, _deploy_ready),
    ]
    for w in watches:
        w.start()
    time.sleep(1.0)  # the watches are open before the first child
    counted, cpu0 = run.api_metrics(), run.cpu_of_parts()
    t0 = time.monotonic()

    def create(name: str) -> dict[str, Any]:
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
        return run.crs.create_namespaced_custom_object(GROUP, VERSION, run.namespace, PLURAL, body)

    created = list(run.pool.map(create, run.names))

    def apply(manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        run.api.call_api(
            *run.api.param_serialize(
                method="PATCH",
                resource_path=object_path(
                    manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
                ),
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={"Content-Type": APPLY_PATCH, "Accept": "application/json"},
                body=manifest,
                auth_settings=["BearerToken"],
            )
        ).read()

    def children(body: dict[str, Any]) -> None:
        system = System.from_body(body)
        for make in (admin_secret.engine_admin, admin_secret.safety_token):
            secret = make(system, admin_secret.generate_token())
            run.core.create_namespaced_secret(run.namespace, secret)
        manifests = build_children(system, BuildOptions())
        for m in [m for m in manifests if m["kind"] not in WORKLOAD_KINDS]:
            apply(m)
        for m in [m for m in manifests if m["kind"] in WORKLOAD_KINDS]:
            apply(m)

    with cf.ThreadPoolExecutor(workers, thread_name_prefix="floor") as pool:
        list(pool.map(children, created))
    applied_s = time.monotonic() - t0
    deadline = time.monotonic() + 120 + run.n
    ready: list[float] = []
    while time.monotonic() < deadline:
        sts, deploy = watches[0].hits, watches[1].hits
        ready = [
            max(sts[names.engine(n)], deploy[names.safety(n)]) - t0
            for n in run.names
            if names.engine(n) in sts and names.safety(n) in deploy
        ]
        if len(ready) == run.n:
            break
        time.sleep(0.05)
    for w in watches:
        w.stop_flag.set()
    if len(ready) < run.n:
        raise TimeoutError(f"floor: {run.n - len(ready)} of {run.n} systems not Ready")
    cpu = run.cpu_since(cpu0)
    run.log(
        f"floor (no operator): children applied after {applied_s:.1f} s; all Ready after {max(ready):.1f} s"
    )
    return {
        "workers": workers,
        "children_applied_s": round(applied_s, 2),
        **percentiles(ready, 2),
        "api_requests": request_delta(count_requests(counted), count_requests(run.api_metrics())),
        "events_by_source": run.event_sources(),
        "cpu_seconds": cpu,
    }
