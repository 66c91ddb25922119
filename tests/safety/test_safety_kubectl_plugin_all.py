"""`kubectl quantzoo kill|release --all` acts on every system at once (against the plugin's stand-in;
test_safety_cluster.py runs the plugin against the real API server): all are engaged, the output stays
grouped per system in name order, and one refusal neither stops the others nor hides its reason."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

from quantzoo_safety import kubectl_plugin
from safety_fake_kube import FakeTradingSystems

NAMES = tuple(f"ts-{i:02d}" for i in range(20))


class ConcurrencyProbe(FakeTradingSystems):
    """Records how many reads were in flight at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(0.02)
            return super().get(namespace, name)
        finally:
            with self._lock:
                self.in_flight -= 1


def run(systems: FakeTradingSystems, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = kubectl_plugin.main(list(argv), systems=systems, out=out, err=err)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def test_kill_all_engages_every_system_concurrently_with_output_in_name_order() -> None:
    systems = ConcurrencyProbe(names=NAMES)
    code, out, err = run(systems, "kill", "--all", "-n", "trading", "--reason", "market halt")
    assert (code, err) == (0, "")
    assert all(c.obj["spec"]["killSwitch"]["engaged"] for c in systems.clients.values())
    assert [line.split(":")[0] for line in out.splitlines()] == [f"tradingsystem trading/{n}" for n in NAMES]
    assert systems.max_in_flight > 1, "systems were patched one after the other"

    code, out, err = run(
        systems, "release", "--all", "-n", "trading", "--reason", "resolved", "--operator", "bob"
    )
    assert (code, err) == (0, "")
    assert not any(c.obj["spec"]["killSwitch"]["engaged"] for c in systems.clients.values())


def test_one_refusal_does_not_stop_the_others_and_is_reported() -> None:
    systems = FakeTradingSystems(names=NAMES)
    systems.clients[("trading", "ts-07")].forbidden = True
    code, out, err = run(systems, "kill", "--all", "-n", "trading", "--reason", "market halt")
    assert code == 1
    assert "ts-07" in err
    assert "forbidden" in err
    engaged = {n for (_, n), c in systems.clients.items() if c.obj["spec"]["killSwitch"]["engaged"]}
    assert engaged == set(NAMES) - {"ts-07"}
    assert out.count("ENGAGED") == len(NAMES) - 1
