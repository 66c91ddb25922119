"""A direct halt made while the API server is down survives a restart of the safety service: it is kept in
a file, the engine is halted again at start (it may have restarted and resumed meanwhile), and it is
recorded in the TradingSystem as soon as the API server answers."""

from __future__ import annotations

from pathlib import Path

from quantzoo_api.types import KillSwitchMode
from quantzoo_safety.engagement import EngageIntent
from quantzoo_safety.pending_store import PendingStore
from safety_support import ACTIVATE, AUTH


def test_store_round_trip_and_clear(tmp_path: Path) -> None:
    store = PendingStore(tmp_path / "pending.json")
    intent = EngageIntent(reason="r", operator="alice", source="safety-api", close_positions=True,
                          mode=KillSwitchMode.REDUCE_ONLY)  # fmt: skip
    assert store.load() is None
    store.save(intent, "2026-01-01T00:00:00Z")
    assert store.load() == (intent, "2026-01-01T00:00:00Z")
    store.clear()
    assert store.load() is None
    store.clear()  # idempotent


def test_an_unreadable_record_still_keeps_a_halt(tmp_path: Path) -> None:
    (tmp_path / "pending.json").write_text("{not json")
    restored = PendingStore(tmp_path / "pending.json").load()
    assert restored is not None
    assert restored[0].reason.startswith("pending direct halt")


def test_without_a_path_nothing_is_written(tmp_path: Path) -> None:
    store = PendingStore(None)
    store.save(EngageIntent(reason="r", operator="o", source="s"), "t")
    assert store.load() is None
    assert not list(tmp_path.iterdir())


def test_a_pending_direct_halt_survives_a_safety_restart(make_client, engine, fake_kube, tmp_path):
    pending = tmp_path / "pending.json"
    fake_kube.unreachable = True
    with make_client(fake_kube, pending_file=str(pending)) as c:
        body = c.post("/kill-switch/activate", json=ACTIVATE, headers=AUTH).json()
        assert body["kubernetes"] == "unreachable"
        assert body["engine"] == "halted"
    assert pending.exists()

    engine.engine.reset()  # the engine restarted too and, not knowing of the halt, trades again
    assert engine.engine.trading_state == "ACTIVE"
    with make_client(fake_kube, pending_file=str(pending)) as c:
        assert engine.engine.trading_state == "HALTED"
        assert c.ctx.killswitch.pending is not None
        assert c.ctx.killswitch.pending.operator == ACTIVATE["operator"]
        status = c.get("/status", headers=AUTH).json()  # audited too
        assert status["pending_tradingsystem_patch"]["operator"] == ACTIVATE["operator"]
        assert "kill-switch.restore-pending" in [e["action"] for e in c.ctx.audit.recent(5)]
        # The API server answers again: recorded in the source of truth, and the file goes.
        fake_kube.unreachable = False
        assert c.portal.call(c.ctx.killswitch.sync_pending).result == "patched"
        assert fake_kube.obj["spec"]["killSwitch"]["operator"] == ACTIVATE["operator"]
    assert not pending.exists()
