"""The operator's kopf diff base (quantzoo_operator/diffbase.py) builds exactly kopf's essence, and the
stored annotation kopf compares against, without deep-copying status and managedFields."""

from __future__ import annotations

import copy
from typing import Any

import kopf
from quantzoo_operator.diffbase import (
    DIGEST_PREFIX,
    DigestAnnotationsDiffBaseStorage,
    SlimAnnotationsDiffBaseStorage,
    slim_body,
)
from quantzoo_operator.settings import (
    ANNOTATION_PREFIX,
    DIFF_BASE_KEY,
    KILL_SWITCH_FIELD,
    OperatorConfig,
    configure_kopf,
)


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
                f"{ANNOTATION_PREFIX}/{DIFF_BASE_KEY}": '{"spec": {}}',
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
        "key": DIFF_BASE_KEY,
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


def _digest_storage(**kwargs: Any) -> DigestAnnotationsDiffBaseStorage:
    return DigestAnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX,
        key=DIFF_BASE_KEY,
        ignored_fields=[KILL_SWITCH_FIELD],
        **kwargs,
    )


def _stored(storage: DigestAnnotationsDiffBaseStorage, raw: dict[str, Any]) -> dict[str, Any]:
    """The body as the API server returns it after kopf's patch with the stored diff base."""
    body = kopf.Body(copy.deepcopy(raw))
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    stored = copy.deepcopy(raw)
    stored["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    return stored


def test_the_annotation_holds_a_digest_not_the_spec() -> None:
    storage = _digest_storage()
    raw = _body()
    raw["spec"]["strategy"] = {"params": {"note": "x" * 4000}}
    annotation = _stored(storage, raw)["metadata"]["annotations"][f"{ANNOTATION_PREFIX}/{DIFF_BASE_KEY}"]
    assert annotation.startswith(DIGEST_PREFIX)
    assert len(annotation) < 80
    assert "x" * 10 not in annotation


def test_an_unchanged_object_has_no_diff_and_a_changed_one_the_exact_diff() -> None:
    storage = _digest_storage()
    stored = _stored(storage, _body())
    # A status-only echo, and a change of spec.killSwitch (outside the diff base): nothing changed.
    echo = copy.deepcopy(stored)
    echo["status"]["phase"] = "Running"
    echo["spec"]["killSwitch"]["engaged"] = False
    body = kopf.Body(echo)
    assert storage.fetch(body=body) == storage.build(body=body)
    changed = copy.deepcopy(stored)
    changed["spec"]["symbols"] = ["AAPL", "MSFT"]
    body = kopf.Body(changed)
    old = storage.fetch(body=body)
    assert old == storage.build(body=kopf.Body(stored))  # what was handled, not the new essence


def test_after_a_restart_an_unchanged_object_still_has_no_diff_and_a_change_is_an_update() -> None:
    stored = _stored(_digest_storage(), _body())
    restarted = _digest_storage()  # remembers no essence
    body = kopf.Body(copy.deepcopy(stored))
    assert restarted.fetch(body=body) == restarted.build(body=body)
    changed = copy.deepcopy(stored)
    changed["spec"]["symbols"] = ["MSFT"]
    # A process that resumed the system before the change remembers what it resumed: the exact old essence.
    assert restarted.fetch(body=kopf.Body(changed)) == restarted.build(body=kopf.Body(stored))
    # One that never saw it unchanged (the change happened while no operator ran): an empty old essence.
    old = _digest_storage().fetch(body=kopf.Body(changed))
    assert old == {}  # not None: None would make kopf run the create handlers again


def test_after_a_restart_an_unchanged_essence_is_built_and_hashed_once_not_on_every_echo() -> None:
    """kopf stores a diff base only when the essence changed: an unchanged system's later echoes (a halt's
    status writes) must find its essence remembered, not rebuild it in every fetch."""
    stored = _stored(_digest_storage(), _body())
    restarted = _digest_storage()
    builds = 0
    build = restarted.build

    def counting_build(**kwargs: Any) -> Any:
        nonlocal builds
        builds += 1
        return build(**kwargs)

    restarted.build = counting_build  # type: ignore[method-assign]
    for phase in ("Running", "Halted", "Running"):
        echo = copy.deepcopy(stored)
        echo["status"]["phase"] = phase
        assert restarted.fetch(body=kopf.Body(echo)) == build(body=kopf.Body(echo))
    assert builds == 1


def test_an_earlier_releases_annotation_is_still_read_and_nothing_stored_is_none() -> None:
    storage = _digest_storage()
    raw = _body()
    raw["metadata"]["annotations"][f"{ANNOTATION_PREFIX}/{DIFF_BASE_KEY}"] = '{"spec":{"symbols":["X"]}}'
    assert storage.fetch(body=kopf.Body(raw)) == {"spec": {"symbols": ["X"]}}
    del raw["metadata"]["annotations"][f"{ANNOTATION_PREFIX}/{DIFF_BASE_KEY}"]
    assert storage.fetch(body=kopf.Body(raw)) is None


def test_the_remembered_essences_are_bounded() -> None:
    storage = _digest_storage(remembered=2)
    first = _stored(storage, _body())
    for symbol in ("B", "C"):
        raw = _body()
        raw["spec"]["symbols"] = [symbol]
        _stored(storage, raw)
    changed = copy.deepcopy(first)
    changed["spec"]["symbols"] = ["Z"]
    assert storage.fetch(body=kopf.Body(changed)) == {}  # the first essence was forgotten


def test_no_handler_asks_for_extra_fields_which_the_digest_check_leaves_out() -> None:
    """After a restart the digest is checked against an essence built without kopf's extra fields (a
    handler's `field=`): a handler that took one would see every unchanged system as changed."""
    import quantzoo_operator.handlers.accounts
    import quantzoo_operator.handlers.children
    import quantzoo_operator.handlers.deletion
    import quantzoo_operator.handlers.killswitch
    import quantzoo_operator.handlers.reconcile  # noqa: F401  (registers the handlers)
    from quantzoo_api import GROUP, PLURAL, VERSION
    from quantzoo_api.accounts import ACCOUNT_PLURAL

    registry = kopf.get_default_registry()
    for plural in (PLURAL, ACCOUNT_PLURAL):
        resource = kopf.Resource(GROUP, VERSION, plural)
        for handlers in (registry._watching, registry._changing, registry._spawning):
            assert not handlers.get_extra_fields(resource=resource), plural


def _statefulset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "demo-engine", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "engine"}]}}},
        "status": {"readyReplicas": 1},
    }


def test_a_child_event_costs_no_essence_and_a_tradingsystem_keeps_its_own() -> None:
    kwargs: dict[str, Any] = {"prefix": ANNOTATION_PREFIX, "key": DIFF_BASE_KEY}
    every, ours = (
        DigestAnnotationsDiffBaseStorage(**kwargs),
        DigestAnnotationsDiffBaseStorage(**kwargs, groups=["trading.quantzoo.io"]),
    )
    child = kopf.Body(_statefulset())
    assert every.build(body=child)["spec"]["replicas"] == 1  # kopf's default: an essence for everything
    assert ours.build(body=child) == {}
    assert ours.fetch(body=child) is None
    system = kopf.Body(_body())
    assert ours.build(body=system) == every.build(body=system) != {}
    core = kopf.Body({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}})
    assert ours.build(body=core) == {}


def test_every_kind_with_create_update_handlers_or_timers_is_diffed() -> None:
    """kopf reads the essence only for resources with changing handlers or timers (its _detect_causes):
    each of those must be in the configured groups, or its updates would be diffed against nothing."""
    import quantzoo_operator.main  # noqa: F401 -- registers every handler in kopf's default registry

    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorConfig())
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, DigestAnnotationsDiffBaseStorage)
    registry = kopf.get_default_registry()
    handlers = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    assert handlers
    for handler in handlers:
        selector = handler.selector
        assert selector is not None
        body = {"apiVersion": f"{selector.group}/{selector.version}", "kind": "X", "metadata": {}}
        assert storage.diffed(body), handler.id
