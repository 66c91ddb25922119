"""Unit tests of kill-switch planning (pure, milliseconds) and of the propagator loop with fakes."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from quantzoo_api.deletion import FLATTEN_ON_DELETE_ANNOTATION, deletion_command
from quantzoo_api.engine_pods import REFUSED_BY_POLICY, Target, permitted, select_targets
from quantzoo_api.killswitch import KillSource, KillSwitchAck, KillSwitchCommand, TradingState
from quantzoo_api.types import KillSwitchMode
from quantzoo_operator.killswitch import planning as propagation
from quantzoo_operator.killswitch.finalizer import halt_before_delete
from quantzoo_operator.killswitch.planning import Ack, Intent, Outcome
from quantzoo_operator.killswitch.propagator import Propagator
from quantzoo_operator.metrics import OperatorMetrics
from quantzoo_operator.settings import OperatorConfig

NOW = "2026-01-01T00:00:00.000Z"


def body(kill: dict[str, Any] | None = None, generation: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": generation, **meta},
        "spec": {"killSwitch": kill or {}},
        "status": {},
    }


def pod(
    name: str,
    *,
    ready: bool = True,
    ip: str | None = "10.244.0.9",
    annotation: str | None = None,
    **meta: Any,
):
    annotations = {"trading.quantzoo.io/admin-endpoint": annotation} if annotation else {}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "annotations": annotations, **meta},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def ack(target: Target, engaged: bool = True, state: TradingState = TradingState.HALTED) -> Ack:
    return Ack(
        target=target,
        ack=KillSwitchAck(
            pod=target.pod,
            engaged=engaged,
            trading_state=state,
            acknowledged_at=datetime(2026, 1, 1, tzinfo=UTC),
            cancelled_orders=["a", "b"],
            closed_positions=["AAPL"],
        ),
        latency_ms=3.21,
    )


ENGAGED = {"engaged": True, "reason": "fat finger", "operator": "alice", "source": "kubectl", "mode": "Halt"}
RELEASED = {"engaged": False, "release": {"operator": "bob", "reason": "all clear"}}


# -- when to push ---------------------------------------------------------------------------------
def test_an_engaged_switch_is_pushed_on_first_sight_and_on_every_change() -> None:
    first = Intent.from_body(body(ENGAGED))
    assert propagation.should_push(None, first)
    assert not propagation.should_push(first, Intent.from_body(body(ENGAGED, generation=2)))
    changed = Intent.from_body(body({**ENGAGED, "closePositions": True}, generation=3))
    assert propagation.should_push(first, changed)


def test_a_release_is_pushed_only_as_an_explicit_act() -> None:
    released = Intent.from_body(body(RELEASED))
    assert not propagation.should_push(None, released), "never re-pushed on the operator's first sight"
    assert propagation.should_push(Intent.from_body(body(ENGAGED)), released)
    never = Intent.from_body(body({}))
    assert not propagation.should_push(None, never)
    assert not propagation.should_push(never, Intent.from_body(body({"reason": "edited"})))


def test_the_command_carries_who_why_and_the_generation() -> None:
    cmd = propagation.command(Intent.from_body(body({**ENGAGED, "mode": "ReduceOnly"}, generation=7)))
    assert isinstance(cmd, KillSwitchCommand)
    assert (cmd.engaged, cmd.mode, cmd.generation) == (True, KillSwitchMode.REDUCE_ONLY, 7)
    assert (cmd.reason, cmd.operator, cmd.source) == ("fat finger", "alice", "operator")
    release = propagation.command(Intent.from_body(body(RELEASED, generation=8)))
    assert (release.engaged, release.operator, release.reason, release.generation) == (
        False,
        "bob",
        "all clear",
        8,
    )
    assert release.close_positions is False
    deleting = body({"engaged": True, "closePositions": True}, generation=9)
    halt = deletion_command(deleting, source=KillSource.FINALIZER)
    assert (halt.engaged, halt.close_positions, halt.source, halt.generation) == (
        True,
        True,
        "operator:finalizer",
        9,
    )


# -- which replicas -------------------------------------------------------------------------------
def test_targets_are_every_running_not_terminating_pod_with_an_endpoint_ready_or_not() -> None:
    """Issue #15, finding 1 (operator side): a NotReady engine pod may still trade (a partitioned engine
    fails its readiness probe); it is pushed to by pod IP like the others."""
    pods = [
        pod("demo-engine-1", annotation="http://127.0.0.1:9999/"),
        pod("demo-engine-0"),
        pod("not-ready", ready=False, ip="10.244.0.10"),
        pod("no-ip", ip=None),
        pod("going", deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    targets = select_targets(pods)
    assert targets == [
        Target("demo-engine-0", "uid-demo-engine-0", "http://10.244.0.9:8001"),
        Target("demo-engine-1", "uid-demo-engine-1", "http://127.0.0.1:9999"),
        Target("not-ready", "uid-not-ready", "http://10.244.0.10:8001"),
    ]


def test_a_deletion_also_dials_pods_in_their_grace_period_once_marked_terminating() -> None:
    """A foreground deletion (Argo CD's default) has the garbage collector delete the engine's pods while the
    finalizer runs: a pod in its grace period may still answer, and only an answer confirms a flatten."""
    pods = [
        pod("demo-engine-0", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("demo-engine-1"),
        {**pod("exited", deletionTimestamp="2026-01-01T00:00:00Z"), "status": {"phase": "Succeeded"}},
    ]
    assert select_targets(pods, terminating=True) == [
        Target("demo-engine-0", "uid-demo-engine-0", "http://10.244.0.9:8001", terminating=True),
        Target("demo-engine-1", "uid-demo-engine-1", "http://10.244.0.9:8001"),
    ]
    assert [t.pod for t in select_targets(pods)] == ["demo-engine-1"]


@pytest.mark.parametrize(
    ("endpoint", "networks", "allowed"),
    [
        ("http://10.244.0.7:8001", (), True),
        ("http://10.244.0.7:8001", ("127.0.0.0/8",), False),
        ("http://127.0.0.1:40123", ("127.0.0.0/8",), True),
        ("http://localhost:40123", ("127.0.0.0/8",), True),
        ("http://[::1]:40123", ("127.0.0.0/8", "::1/128"), True),
        ("http://engine.example:8001", ("127.0.0.0/8",), False),  # names are never resolved
    ],
)
def test_pushes_go_only_to_permitted_networks(
    endpoint: str, networks: tuple[str, ...], allowed: bool
) -> None:
    assert permitted(endpoint, networks) is allowed


def test_pending_and_done_follow_acknowledgements_by_pod_uid() -> None:
    a, b = Target("e-0", "u0", "http://a"), Target("e-1", "u1", "http://b")
    acks = {"u0": ack(a)}
    assert propagation.pending([a, b], acks) == [b]
    outcome = Outcome.of([a, b], acks, {"e-1": "http://b: ConnectError"})
    assert (outcome.acknowledged, outcome.total, outcome.done) == (1, 2, False)
    assert Outcome.of([a], acks, {}).done
    replaced = Target("e-0", "u0-new", "http://a")
    assert propagation.pending([replaced], acks) == [replaced], "a replaced pod must acknowledge again"
    assert Outcome.of([], {}, {}).done


def test_an_answer_that_is_not_in_force_does_not_count() -> None:
    t = Target("e-0", "u0", "http://a")
    assert propagation.acknowledges(True, ack(t).ack)
    assert not propagation.acknowledges(True, ack(t, state=TradingState.ACTIVE).ack)
    assert not propagation.acknowledges(True, ack(t, engaged=False, state=TradingState.ACTIVE).ack)
    assert propagation.acknowledges(False, ack(t, engaged=False, state=TradingState.ACTIVE).ack)


# -- what status and the Event say ----------------------------------------------------------------
def test_summary_reads_like_the_event_a_person_wants() -> None:
    intent = Intent.from_body(body(ENGAGED))
    t = Target("demo-engine-0", "u0", "http://a")
    done = Outcome.of([t], {"u0": ack(t)}, {})
    assert propagation.summary(intent, done, 12.4) == (
        "Kill switch engaged by alice (kubectl): fat finger; acknowledged by 1/1 replicas in 12 ms"
    )
    stuck = Outcome.of([t], {}, {"demo-engine-0": "http://a: ConnectError"})
    assert propagation.summary(intent, stuck) == (
        "Kill switch engaged by alice (kubectl): fat finger; acknowledged by 0/1 replicas; "
        "unreachable: demo-engine-0 (http://a: ConnectError); retrying"
    )
    assert "no engine replica is running" in propagation.summary(intent, Outcome.of([], {}, {}))
    released = Intent.from_body(body(RELEASED))
    assert propagation.summary(released, done, 3).startswith("Kill switch released by bob: all clear;")


def test_status_patch_records_every_acknowledgement() -> None:
    intent = Intent.from_body(body({**ENGAGED, "engagedAt": "2026-01-01T09:30:00.000Z"}, generation=5))
    t = Target("demo-engine-0", "u0", "http://a")
    patch = propagation.status_patch(
        intent, Outcome.of([t], {"u0": ack(t)}, {}), latency_ms=12.345, current_status={}, now=NOW
    )
    (cond,) = patch["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "KillSwitchEngaged",
        "True",
        "Acknowledged",
        5,
    )
    ks = patch["killSwitch"]
    assert ks == {
        "engaged": True,
        "mode": "Halt",
        "since": "2026-01-01T09:30:00.000Z",
        "reason": "fat finger",
        "by": "alice",
        "source": "kubectl",
        "generation": 5,
        "propagationLatencyMs": 12.3,
        "acknowledgements": [
            {
                "replica": "demo-engine-0",
                "endpoint": "http://a",
                "engaged": True,
                "tradingState": "HALTED",
                "acknowledgedAt": "2026-01-01T00:00:00.000Z",
                "latencyMs": 3.2,
                "cancelledOrders": 2,
                "closedPositions": 1,
                "workingOrders": 0,
                "errors": [],
            }
        ],
    }
    unacked = propagation.status_patch(
        intent, Outcome.of([t], {}, {"demo-engine-0": "x"}), latency_ms=None, current_status={}, now=NOW
    )
    assert unacked["conditions"][0]["reason"] == "Unacknowledged"
    assert "propagationLatencyMs" not in unacked["killSwitch"]


def test_retry_delays_double_up_to_the_cap() -> None:
    assert list(itertools.islice(propagation.retry_delays(0.2, 2.0), 6)) == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


# -- the propagator loop, with fakes for the API and the engines -----------------------------------
class FakePusher:
    def __init__(self, targets: list[Target]) -> None:
        self._targets = targets
        self.down: set[str] = set()
        self.pushed: list[tuple[str, KillSwitchCommand]] = []
        self.warmed: list[tuple[str, str]] = []
        self.refused: set[str] = set()

    async def targets(self, namespace: str, name: str, *, terminating: bool = False) -> list[Target]:
        return [t for t in self._targets if terminating or not t.terminating]

    def warm_token(self, namespace: str, name: str) -> None:
        self.warmed.append((namespace, name))

    async def push(self, namespace: str, name: str, targets: list[Target], command: KillSwitchCommand):
        acks, failures = [], {}
        for t in targets:
            self.pushed.append((t.pod, command))
            if t.pod in self.refused:
                failures[t.pod] = f"{t.endpoint}: {REFUSED_BY_POLICY}"
            elif t.pod in self.down:
                failures[t.pod] = f"{t.endpoint}: ConnectError"
            else:
                acks.append(
                    ack(
                        t,
                        engaged=command.engaged,
                        state=TradingState.HALTED if command.engaged else TradingState.ACTIVE,
                    )
                )
        return acks, failures

    async def trading_state(self, target: Target) -> TradingState | None:
        return TradingState.HALTED


class FakeKube:
    def __init__(self) -> None:
        self.status: list[dict[str, Any]] = []

    async def apply_status(
        self, namespace: str, name: str, body: dict, manager: str, *, kill: bool = False
    ) -> dict:
        assert manager == "quantzoo-operator-killswitch"
        assert kill is True
        self.status.append(body["status"])
        return {}


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def post(self, body: dict, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def make_propagator(pusher: FakePusher) -> tuple[Propagator, FakeKube, FakeRecorder, OperatorMetrics]:
    config = OperatorConfig(retry_initial_seconds=0.01, retry_max_seconds=0.02, keep_halt_interval_seconds=60)
    kube, recorder, metrics = FakeKube(), FakeRecorder(), OperatorMetrics()
    refreshed: list[tuple[str, str]] = []

    async def refresh(namespace: str, name: str) -> None:
        refreshed.append((namespace, name))

    prop = Propagator(config, kube, pusher, recorder, metrics, refresh, lambda: None)  # type: ignore[arg-type]
    return prop, kube, recorder, metrics


async def _until(check, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_propagator_retries_until_every_replica_acknowledges() -> None:
    async def scenario() -> None:
        a, b = Target("e-0", "u0", "http://a"), Target("e-1", "u1", "http://b")
        pusher = FakePusher([a, b])
        pusher.down = {"e-1"}
        prop, kube, recorder, metrics = make_propagator(pusher)
        prop.observe(body(ENGAGED), asyncio.get_running_loop().time())
        await _until(lambda: any(r == "KillSwitchUnacknowledged" for _, r, _ in recorder.events))
        assert kube.status[-1]["conditions"][0]["reason"] == "Unacknowledged"
        assert prop.health()["unacknowledged"] == 1
        pusher.down = set()
        await _until(lambda: any(r == "KillSwitchEngaged" for _, r, _ in recorder.events))
        assert kube.status[-1]["conditions"][0]["reason"] == "Acknowledged"
        assert [p for p, _ in pusher.pushed].count("e-0") == 1, "an acknowledged replica is not pushed again"
        assert prop.systems[("ns", "demo")].unacknowledged is False
        assert metrics.propagation_seconds.collect()[0].samples  # observed
        await prop.stop()

    asyncio.run(scenario())


def test_propagator_latest_spec_wins_and_duplicates_push_nothing() -> None:
    async def scenario() -> None:
        t = Target("e-0", "u0", "http://a")
        pusher = FakePusher([t])
        prop, kube, _, _ = make_propagator(pusher)
        now = asyncio.get_running_loop().time()
        prop.observe(body(ENGAGED, resourceVersion="10"), now)
        await _until(lambda: len(pusher.pushed) == 1)
        prop.observe(body(ENGAGED, generation=2, resourceVersion="11"), now)  # same switch, other spec change
        prop.nudge(body(ENGAGED, resourceVersion="9"))  # an older version from kopf's queue
        await asyncio.sleep(0.05)
        assert len(pusher.pushed) == 1
        prop.observe(
            body({**ENGAGED, "engaged": False, "release": {"operator": "bob", "reason": "ok"}}, 3), now
        )
        await _until(lambda: len(pusher.pushed) == 2)
        assert pusher.pushed[-1][1].engaged is False
        await _until(lambda: kube.status and kube.status[-1]["conditions"][0]["reason"] == "Released")
        await prop.stop()

    asyncio.run(scenario())


def test_a_released_switch_seen_first_is_recorded_not_pushed() -> None:
    async def scenario() -> None:
        pusher = FakePusher([Target("e-0", "u0", "http://a")])
        prop, kube, _, _ = make_propagator(pusher)
        prop.observe(body(RELEASED), asyncio.get_running_loop().time())
        await _until(lambda: bool(kube.status))
        assert not pusher.pushed
        assert kube.status[-1]["conditions"][0]["reason"] == "Released"
        await prop.stop()

    asyncio.run(scenario())


def test_a_deleting_object_is_left_to_the_finalizer() -> None:
    async def scenario() -> None:
        pusher = FakePusher([Target("e-0", "u0", "http://a")])
        prop, _, _, _ = make_propagator(pusher)
        prop.observe(body(ENGAGED, deletionTimestamp=NOW), asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)
        assert not pusher.pushed
        await prop.stop()

    asyncio.run(scenario())


def test_only_refused_by_policy() -> None:
    refused = f"http://10.244.0.7:8001: {REFUSED_BY_POLICY}"
    assert propagation.only_refused_by_policy({"e-0": refused})
    assert not propagation.only_refused_by_policy({"e-0": refused, "e-1": "http://a: ConnectError"})
    assert not propagation.only_refused_by_policy({})


def test_a_replica_refused_by_policy_is_retried_at_the_keep_halt_cadence_not_the_fast_one() -> None:
    """A kill-all while many replicas are outside the push networks must not turn into a storm of pod
    lists (one per retry per system); a network failure is still retried fast."""

    async def scenario(refused: bool) -> int:
        t = Target("e-0", "u0", "http://10.244.0.7:8001")
        pusher = FakePusher([t])
        (pusher.refused if refused else pusher.down).add("e-0")
        prop, kube, _, _ = make_propagator(pusher)  # retries 0.01-0.02 s, keep-halt 60 s
        prop.observe(body(ENGAGED), asyncio.get_running_loop().time())
        await _until(lambda: kube.status and kube.status[-1]["conditions"][0]["reason"] == "Unacknowledged")
        await asyncio.sleep(0.3)
        await prop.stop()
        return len(pusher.pushed)

    assert asyncio.run(scenario(refused=True)) == 1
    assert asyncio.run(scenario(refused=False)) > 5


def test_a_release_names_its_engagement_and_a_409_refusal_is_not_retried() -> None:
    """Issue #15, finding 4 (operator side): the release command names the engagement it ends; a replica
    held by another engagement refuses it with 409, and the operator does not push it again."""
    body = {
        "metadata": {"generation": 7},
        "spec": {
            "killSwitch": {
                "engaged": False,
                "release": {"operator": "bob", "reason": "ok", "engagedAt": "2026-12-05T18:00:00.5Z"},
            }
        },
    }
    intent = Intent.from_body(body)
    cmd = propagation.command(intent)
    assert (cmd.engaged, cmd.engagement, cmd.generation) == (False, "2026-12-05T18:00:00.500Z", 7)
    refused = {"demo-engine-0": "http://10.0.0.1:8001: HTTP 409"}
    assert propagation.release_refused(intent, refused)
    assert not propagation.release_refused(intent, {"demo-engine-0": "http://10.0.0.1:8001: ConnectError"})
    engaged = Intent.from_body({"spec": {"killSwitch": {"engaged": True}}})
    assert not propagation.release_refused(engaged, refused)


# -- the finalizer's halt, with the same fakes ------------------------------------------------------
def deleting_body(**annotations: str) -> dict[str, Any]:
    meta = {"namespace": "t", "name": "demo", "generation": 4, "annotations": annotations}
    return {"metadata": {**meta, "deletionTimestamp": NOW}, "spec": {}}


def run_finalizer(pusher: FakePusher, body: dict[str, Any]) -> tuple[bool, FakeRecorder]:
    config = OperatorConfig(
        retry_initial_seconds=0.01, retry_max_seconds=0.02, delete_halt_timeout_seconds=0.2
    )
    recorder = FakeRecorder()
    done = asyncio.run(halt_before_delete(body, pusher, recorder, config))  # type: ignore[arg-type]
    return done, recorder


TERMINATING = Target("demo-engine-0", "u0", "http://a", terminating=True)


def test_a_deletion_pushes_to_an_engine_pod_already_terminating() -> None:
    """A foreground deletion (Argo CD's default) has the garbage collector delete the engine's pods while the
    finalizer runs. Before: the terminating pod was skipped, "No engine replica was running", no flatten."""
    pusher = FakePusher([TERMINATING])
    done, recorder = run_finalizer(pusher, deleting_body(**{FLATTEN_ON_DELETE_ANNOTATION: "true"}))
    assert done
    assert [(pod, c.close_positions) for pod, c in pusher.pushed] == [("demo-engine-0", True)]
    ((type_, reason, message),) = recorder.events
    assert (type_, reason) == ("Normal", "HaltedBeforeDelete")
    assert "acknowledged by 1/1" in message


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, (True, "Normal", "HaltedBeforeDelete")),
        # Only an answer confirms a flatten: unconfirmed is a Warning, and the deletion proceeds.
        ({FLATTEN_ON_DELETE_ANNOTATION: "true"}, (False, "Warning", "DeletionProceededWithoutHalt")),
    ],
)
def test_a_terminating_pod_that_does_not_answer_is_dialled_once_and_named(
    annotations: dict[str, str], expected: tuple[bool, str, str]
) -> None:
    pusher = FakePusher([TERMINATING, Target("demo-engine-1", "u1", "http://b")])
    pusher.down = {"demo-engine-0"}
    done, recorder = run_finalizer(pusher, deleting_body(**annotations))
    assert [pod for pod, _ in pusher.pushed] == ["demo-engine-0", "demo-engine-1"]
    ((type_, reason, message),) = recorder.events
    assert (done, type_, reason) == expected
    assert "acknowledged by 1/2" in message
    assert "1 already terminating did not answer (demo-engine-0: http://a: ConnectError)" in message
