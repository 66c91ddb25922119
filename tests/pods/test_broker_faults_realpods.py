"""Broker errors during a kill, on a real engine pod: the chart's operator pod and the engine pod it made
for this file's own TradingSystem (own namespace, restricted profile), the real alpaca-py in the pod
against the local Alpaca-wire server on the node's address (tests/pods/alpaca_wire.py), which fails the
cancels: 429 with Retry-After, then 500, then an answer that hangs (60 s, far beyond the engine's kill
deadline, ENGINE_KILL_DEADLINE_SECONDS, 1.5 s by default).

New orders stop at once whatever the broker does (the halt is in memory, before any broker call); the
cancels are retried under each fault; the acknowledgement and the TradingSystem's status say what is
still working; once the broker recovers the orders end cancelled, status converges, and not one order
reached the broker after the engage.

Not modelled: Alpaca's real rate limiter (the fake answers 429 to every cancel while the fault is set,
whatever the rate) and its market hours; the fake's hang holds the request until the client hangs up.
"""

from __future__ import annotations

import itertools
import time

import pytest

from hack.devcluster import node
from tests.engine.engine_fake_alpaca import FakeAlpaca, Fault
from tests.pods import alpaca_wire, ownsystem, realpods
from tests.pods.ownsystem import System, seen

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

NAME = "rpbroker"
NS = "rp-broker"
REASON = "broker trouble"
ROUTE = "DELETE /v2/orders"
RETRY_AFTER = 1
SPEC = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "noop"},  # every order at the broker is one the test placed
    "marketData": {"kind": "simulated", "seed": 13, "intervalSeconds": 0.2},
    "risk": {"staleDataSeconds": 30},
    "engine": {"env": [{"name": "ENGINE_RECONCILE_INTERVAL_SECONDS", "value": "1"}]},
}


def halted(state: dict) -> bool:
    return state["trading_state"] == "HALTED" and state["kill_switch"]["engaged"]


def first_ack(system: System) -> dict:
    ks = (system.get().get("status") or {}).get("killSwitch") or {}
    return (ks.get("acknowledgements") or [{}])[0]


def gaps(fake: FakeAlpaca, since: int) -> list[float]:
    """Seconds between the failing route's hits from its `since`-th on."""
    times = fake.fault_times.get(ROUTE, [])[since:]
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


def retried(fake: FakeAlpaca, times: int, timeout: float, what: str) -> int:
    """Waits for `times` more hits of the failing route; returns the count before them."""
    hits = fake.fault_hits.get(ROUTE, 0)
    realpods.wait_for(lambda: fake.fault_hits.get(ROUTE, 0) >= hits + times, timeout, what, interval=0.1)
    return hits


def test_broker_errors_during_a_kill_orders_stop_cancels_retried_until_done(
    release: node.RealCluster,
) -> None:
    with alpaca_wire.alpaca_system(release, NS, NAME, SPEC) as (system, fake):
        broker_errors_during_a_kill(system, fake)


def broker_errors_during_a_kill(system: System, fake: FakeAlpaca) -> None:
    restarts = ownsystem.ready_pod(system.cluster, NS, NAME, "engine")["status"]["containerStatuses"][0]
    working = alpaca_wire.place_working_orders(system, fake)
    fake.faults[ROUTE] = Fault(status=429, retry_after=RETRY_AFTER)

    since = len(fake.requests)
    engaged = system.engage(REASON)
    # Orders stop at once, whatever Alpaca does: the halt is in memory, before any broker call.
    stopped, _ = seen(system, halted, 15, "engine halted")
    refused = system.order()
    assert refused.status_code == 409, refused.text

    def acked_with_work_left() -> dict | None:
        ack = first_ack(system)
        return ack if ack.get("workingOrders") == len(working) and ack.get("errors") else None

    ack = realpods.wait_for(acked_with_work_left, 30, "an ack that says what is still working")
    assert any("429" in e or "deadline" in e for e in ack["errors"]), ack["errors"]
    assert "still working" in system.conditions()["KillSwitchEngaged"]["message"]
    # Retry-After honoured: no cancel comes sooner than the 429 said (1 s), inside the kill path or after.
    retried(fake, 1, 30, "a retry under 429")
    spacing = {"429": gaps(fake, 0)}
    assert min(spacing["429"]) >= RETRY_AFTER - 0.1, spacing

    # 500s, then a hanging Alpaca: the cancels keep being retried; orders stay refused meanwhile. Each
    # hang would last 60 s: a retry within 30 s means the engine gave up the last one at its deadline.
    for name, fault in (("500", Fault(status=500)), ("hang", Fault(hang_seconds=60))):
        fake.faults[ROUTE] = fault
        before = retried(fake, 2, 30, f"retries under {fault}")
        spacing[name] = gaps(fake, before)
        assert system.order().status_code == 409
        assert halted(system.state())  # the engine answers while its cancels hang
        assert {o["id"] for o in fake.open_orders()} == set(working)
    retries = dict(fake.fault_hits)

    del fake.faults[ROUTE]  # Alpaca recovers
    recovered = time.monotonic()
    realpods.wait_for(lambda: not fake.open_orders(), 30, "the working orders cancelled", interval=0.1)
    cancelled = time.monotonic()
    assert all(fake.orders[i]["status"] == "canceled" for i in working)

    def clean_ack() -> dict | None:
        ack = first_ack(system)
        return ack if ack.get("workingOrders") == 0 and not ack.get("errors") else None

    realpods.wait_for(clean_ack, 30, "status showing the clean-up done", interval=0.2)
    converged = time.monotonic()
    assert "still working" not in system.conditions()["KillSwitchEngaged"]["message"]
    assert alpaca_wire.submissions(fake, since) == []  # not one order reached Alpaca after the engage
    assert halted(system.state())
    # No engine replaced or restarted under the faults, every child the system's own.
    pods = realpods.pods(system.cluster, NS, ownsystem.SELECTOR.format(name=NAME, component="engine"))
    assert [p["metadata"]["name"] for p in pods] == [system.pod]
    sets = realpods.kubectl_json(
        system.cluster, "-n", NS, "get", "sts", "-l", f"trading.quantzoo.io/system={NAME}"
    )
    assert [s["metadata"]["name"] for s in sets["items"]] == [f"{NAME}-engine"]
    after = pods[0]["status"]["containerStatuses"][0]
    assert after["restartCount"] == restarts["restartCount"], after
    system.assert_children_owned()
    print(
        f"broker errors during a kill: new orders stopped {stopped - engaged:.2f}s after kubectl patch; "
        f"cancels failed at the broker {retries}, seconds between them {spacing}; "
        f"orders cancelled {cancelled - recovered:.2f}s and status converged "
        f"{converged - recovered:.2f}s after the broker recovered"
    )
