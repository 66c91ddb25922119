"""The floor for "every status shows the halt" (issue #13 item 3): the same N status writes the operator's
levels component makes for a firm halt, sent straight from a client with the same concurrency, with no
operator running.

In the scale run's namespace, after the one-write rounds and with the operator stopped: `rounds` times per
patch type, write every system's status.killSwitch.heldBy (one Firm hold) and its Halted condition from a
pool of `workers` threads (the levels component's 16), time until the benchmark's own watch of the
systems sees the last one, then write them clear again (not timed). Patch types:
- "apply": server-side apply of the two fields with the levels component's field manager (what the
  operator sent before this benchmark's work);
- "apply-ignore": the same apply with fieldValidation=Ignore (the server's unknown/duplicate-field check
  skipped; the schema's own validation and coercion still run): whether that check is a share of the floor;
- "merge": a JSON merge patch of status.killSwitch.heldBy and the whole conditions list, computed from the
  watch-cached object (the Halted entry replaced), with metadata.resourceVersion as the precondition.
What this leaves out: the operator's own watch of the halt, its CPU on the same 2 cores, and the reconcile
writer's follow-up writes.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable
from typing import Any

from quantzoo_api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from quantzoo_operator.kube import APPLY_PATCH, Kube
from quantzoo_operator.levels.status import FIELD_MANAGER

HOLDER = "Firm/status-floor"
MERGE_PATCH = "application/merge-patch+json"


def _held(holding: bool, now: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    held = [{"level": "Firm", "name": HOLDER, "engagedAt": now, "reason": "floor", "mode": "Halt"}]
    cond = {
        "type": "Halted",
        "status": "True" if holding else "False",
        "reason": "HeldByFirm" if holding else "NotHalted",
        "message": f"held by {HOLDER}: floor" if holding else "no level holds this system",
        "lastTransitionTime": now,
    }
    return (held if holding else []), cond


def _body(kind: str, ns: str, name: str, obj: dict[str, Any], holding: bool, now: str) -> tuple[Any, str]:
    held, cond = _held(holding, now)
    generation = (obj.get("metadata") or {}).get("generation")
    if isinstance(generation, int):
        cond["observedGeneration"] = generation
    if kind.startswith("apply"):
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": ns},
            "status": {"killSwitch": {"heldBy": held}, "conditions": [cond]},
        }
        return body, APPLY_PATCH
    others = [c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") != "Halted"]
    body = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "status": {"killSwitch": {"heldBy": held}, "conditions": [*others, cond]},
    }
    return body, MERGE_PATCH


def _shows(obj: dict[str, Any], holding: bool) -> bool:
    held = ((obj.get("status") or {}).get("killSwitch") or {}).get("heldBy") or []
    return any(h.get("name") == HOLDER for h in held) == holding


def _write(kube: Kube, kind: str, ns: str, name: str, obj: dict[str, Any], holding: bool, now: str) -> None:
    body, ctype = _body(kind, ns, name, obj, holding, now)
    query = [("fieldManager", FIELD_MANAGER)] + ([("force", "true")] if kind.startswith("apply") else [])
    if kind == "apply-ignore":
        query.append(("fieldValidation", "Ignore"))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}/status"
    kube.request("PATCH", path, query=query, body=body, content_type=ctype)


def measure(run: Any, kube_factory: Callable[[], Kube], *, workers: int = 16, rounds: int = 2) -> dict:
    """`run`: a scale_bench ScaleRun whose operator has stopped."""
    kube = kube_factory()
    out: dict[str, Any] = {"workers": workers, "rounds": rounds, "systems": run.n}
    try:
        with cf.ThreadPoolExecutor(workers) as pool:
            for kind in ("apply", "apply-ignore", "merge"):
                times, requests, cpu = [], [], []
                for i in range(rounds * 2):
                    holding = i % 2 == 0
                    snapshot = run.watch.snapshot()
                    run.watch.arm(lambda _n, obj, h=holding: _shows(obj, h))
                    counted, cpu0 = run.api_metrics(), run.cpu_of_parts()
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    t0 = time.monotonic()
                    args = [(kube, kind, run.namespace, n, snapshot[n], holding, now) for n in run.names]
                    list(pool.map(lambda a: _write(*a), args))
                    hits = run.watch.wait(run.names, timeout=60 + 0.2 * run.n, what=f"status floor {kind}")
                    if holding:
                        times.append(round((max(hits.values()) - t0) * 1000, 1))
                        time.sleep(1.0)
                        requests.append(run.request_delta(counted))
                        cpu.append(run.cpu_since(cpu0))
                        run.log(f"status floor ({kind}): every status after {times[-1]:.0f} ms")
                out[kind] = {"status_all_ms": times, "api_requests": requests[0], "cpu_seconds": cpu}
    finally:
        kube.close()
    return out
