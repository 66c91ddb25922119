"""The operator's kopf diff base (quantzoo_operator/diffbase.py) builds exactly kopf's essence, and the
stored annotation kopf compares against, without deep-copying status and managedFields."""

from __future__ import annotations

import copy
from typing import Any

import kopf
from quantzoo_operator.diffbase import SlimAnnotationsDiffBaseStorage, slim_body
from quantzoo_operator.settings import ANNOTATION_PREFIX, KILL_SWITCH_FIELD


def _body() -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {
            "name": "demo",
            "namespace": "ns",
            "uid": "u1",
            "generation": 3,
            "resourceVersion": "42",
            "labels": {"team": "a"},
            "annotations": {
                f"{ANNOTATION_PREFIX}/last-handled-configuration": '{"spec": {}}',
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "note": "kept",
            },
            "managedFields": [{"manager": "m", "fieldsV1": {"f:status": {"f:phase": {}}}}],
            "finalizers": ["trading.quantzoo.io/halt-before-delete"],
        },
        "spec": {"symbols": ["AAPL"], "killSwitch": {"engaged": True, "reason": "r"}, "risk": {"x": [1, 2]}},
        "status": {"phase": "Halted", "conditions": [{"type": "Halted", "status": "True"}]},
    }


def _pair() -> tuple[kopf.AnnotationsDiffBaseStorage, SlimAnnotationsDiffBaseStorage]:
    kwargs: dict[str, Any] = {
        "prefix": ANNOTATION_PREFIX,
        "key": "last-handled-configuration",
        "ignored_fields": [KILL_SWITCH_FIELD],
    }
    return kopf.AnnotationsDiffBaseStorage(**kwargs), SlimAnnotationsDiffBaseStorage(**kwargs)


def test_the_essence_is_kopfs() -> None:
    kopfs, slim = _pair()
    for raw in (_body(), {**_body(), "status": {}}, {k: v for k, v in _body().items() if k != "status"}):
        body = kopf.Body(copy.deepcopy(raw))
        assert slim.build(body=body) == kopfs.build(body=body)
        patches = [kopf.Patch(), kopf.Patch()]
        for storage, patch in zip((kopfs, slim), patches, strict=True):
            storage.store(body=body, patch=patch, essence=storage.build(body=body))
        assert patches[0]  # the stored annotation
        assert patches[0] == patches[1]  # byte for byte
    bare = kopf.Body({"apiVersion": "v", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1}})
    assert slim.build(body=bare) == kopfs.build(body=bare)


def test_extra_fields_still_reach_into_status() -> None:
    kopfs, slim = _pair()
    body = kopf.Body(_body())
    fields = [("status", "phase")]
    assert slim.build(body=body, extra_fields=fields) == kopfs.build(body=body, extra_fields=fields)
    assert slim.build(body=body, extra_fields=fields)["status"] == {"phase": "Halted"}


def test_the_slim_view_leaves_out_what_the_essence_drops() -> None:
    view = slim_body(_body(), keep_status=False)
    assert "status" not in view
    assert set(view["metadata"]) == {"labels", "annotations"}
    assert slim_body(_body(), keep_status=True)["status"]["phase"] == "Halted"
