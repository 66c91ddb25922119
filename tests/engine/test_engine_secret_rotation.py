"""Rotated secrets reach a running engine without a restart: the admin token and the Alpaca key pair are
read from files laid out the way the kubelet mounts a Secret (`..data` symlink swap), and the real
alpaca-py clients are rebuilt when the pair changes, with the engine's state untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, ServerThread
from engine_helpers import free_port, make_spec, market, ready_engine
from fastapi.testclient import TestClient
from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH
from quantzoo_api.secret_file import SecretFile, read_together
from quantzoo_engine.app import build_broker, create_app
from quantzoo_engine.broker.alpaca import AlpacaBroker
from quantzoo_engine.broker.base import BrokerRejected
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.orders import Side
from quantzoo_engine.settings import ConfigError, EngineSettings

from hack.devcluster.podrunner import write_atomically

OLD_TOKEN, NEW_TOKEN = "admin-token-before-rotation", "admin-token-after-rotation"
NEW_KEY, NEW_SECRET = "rotated-key-id", "rotated-secret-key"


def mount(root: Path, files: dict[str, str]) -> None:
    """What the kubelet does when the Secret changes: new files, one atomic `..data` swap."""
    write_atomically(root, {k: v.encode() for k, v in files.items()}, 0o440)


@pytest.fixture
def fake() -> Iterator[tuple[FakeAlpaca, str]]:
    server = FakeAlpaca()
    port = free_port()
    with ServerThread(server.app, port):
        yield server, f"127.0.0.1:{port}"


# -- the file source ---------------------------------------------------------------------------------
def test_secret_file_follows_the_kubelet_symlink_swap(tmp_path: Path) -> None:
    mount(tmp_path, {"token": "first-value"})
    source = SecretFile(tmp_path / "token", "env-fallback")
    assert source.current() == "first-value"
    mount(tmp_path, {"token": "second-value"})  # same length: the inode moves, so it is re-read
    assert source.current() == "second-value"
    assert source.known() == ["env-fallback", "first-value", "second-value"]
    assert SecretFile(None, " env-only \n").current() == "env-only"


def test_an_unreadable_file_keeps_the_last_good_value(tmp_path: Path) -> None:
    mount(tmp_path, {"token": "good-value"})
    source = SecretFile(tmp_path / "token")
    assert source.current() == "good-value"
    (tmp_path / "..data").unlink()  # mid-swap or unmounted
    assert source.current() == "good-value"


def test_a_key_pair_is_read_as_one_set(tmp_path: Path) -> None:
    mount(tmp_path, {"ALPACA_API_KEY": "k1", "ALPACA_API_SECRET": "s1"})
    key, secret = SecretFile(tmp_path / "ALPACA_API_KEY"), SecretFile(tmp_path / "ALPACA_API_SECRET")
    assert read_together([key, secret]) == ("k1", "s1")
    mount(tmp_path, {"ALPACA_API_KEY": "k2", "ALPACA_API_SECRET": "s2"})
    assert read_together([key, secret]) == ("k2", "s2")


def test_settings_read_files_and_prefer_them_over_env(tmp_path: Path) -> None:
    mount(tmp_path / "admin", {"token": OLD_TOKEN})
    mount(tmp_path / "alpaca", {"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET})
    env = {
        "ENGINE_ADMIN_TOKEN": "ignored-because-a-file-is-set",
        "ENGINE_ADMIN_TOKEN_FILE": str(tmp_path / "admin" / "token"),
        "ALPACA_API_KEY_FILE": str(tmp_path / "alpaca" / "ALPACA_API_KEY"),
        "ALPACA_API_SECRET_FILE": str(tmp_path / "alpaca" / "ALPACA_API_SECRET"),
    }
    s = EngineSettings.from_env(env)
    assert s.admin_token_source().current() == OLD_TOKEN
    assert s.alpaca_credentials().current() == (KEY, SECRET)
    assert OLD_TOKEN not in repr(s)
    assert SECRET not in repr(s)


def test_alpaca_without_credential_files_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "engine.json"
    config.write_text('{"spec": {"broker": {"kind": "alpaca", "credentialsSecret": "creds"}}}')
    env = {"QUANTZOO_CONFIG": str(config), "ALPACA_API_KEY_FILE": str(tmp_path / "missing")}
    with pytest.raises(ConfigError, match="ALPACA_API_KEY_FILE"):
        EngineSettings.from_env(env)


# -- the admin API -----------------------------------------------------------------------------------
def test_admin_token_rotates_without_a_restart(tmp_path: Path) -> None:
    mount(tmp_path / "admin", {"token": OLD_TOKEN})
    settings = EngineSettings(
        admin_token_file=tmp_path / "admin" / "token", state_dir=tmp_path, spec=make_spec(), pod_name="rot"
    )
    body = {"engaged": True, "reason": "rotation test", "source": "test"}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    with TestClient(create_app(settings, with_feed=False)) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        ok = client.post(ENGINE_KILL_SWITCH_PATH, json=body, headers=bearer(OLD_TOKEN))
        assert ok.status_code == 200, ok.text
        mount(tmp_path / "admin", {"token": NEW_TOKEN})
        # The previous token stays valid for the rotation overlap window (issue #15: no rotation refuses
        # a kill); anything else is refused, naming neither token.
        old = client.post(ENGINE_KILL_SWITCH_PATH, json=body, headers=bearer(OLD_TOKEN))
        assert old.status_code == 200, old.text
        wrong = client.post(ENGINE_KILL_SWITCH_PATH, json=body, headers=bearer("not-a-token"))
        assert wrong.status_code == 401
        assert OLD_TOKEN not in wrong.text
        assert NEW_TOKEN not in wrong.text
        new = client.post(ENGINE_KILL_SWITCH_PATH, json=body, headers=bearer(NEW_TOKEN))
        assert new.status_code == 200, new.text
        assert client.app.state.engine is engine  # same engine, same state


# -- the broker --------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_alpaca_clients_are_rebuilt_with_rotated_credentials(
    fake: tuple[FakeAlpaca, str], tmp_path: Path
) -> None:
    server, address = fake
    creds = tmp_path / "alpaca"
    mount(creds, {"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET})
    config = tmp_path / "engine.json"
    config.write_text(
        '{"spec": {"symbols": ["AAPL", "MSFT"], "broker": {"kind": "alpaca", "credentialsSecret": "c", '
        f'"baseUrl": "http://{address}"}}}}}}'
    )
    settings = EngineSettings.from_env(
        {
            "QUANTZOO_CONFIG": str(config),
            "ALPACA_API_KEY_FILE": str(creds / "ALPACA_API_KEY"),
            "ALPACA_API_SECRET_FILE": str(creds / "ALPACA_API_SECRET"),
        }
    )
    broker = build_broker(settings, ManualClock())
    assert isinstance(broker, AlpacaBroker)
    try:
        engine = await ready_engine(
            settings.spec, broker=broker, clock=ManualClock(), prices={"AAPL": 190.0, "MSFT": 410.0}
        )
        assert (await engine.submit(market("AAPL", Side.BUY, 3))).order is not None
        assert server.orders_by_key(KEY) == 1

        # Rotate at the broker first (the old key is revoked): the engine's next call is refused.
        server.rotate(NEW_KEY, NEW_SECRET)
        with pytest.raises(BrokerRejected, match="HTTP 401"):
            await broker.account()
        # Then the Secret: the very next call uses the new pair, no restart, positions intact.
        mount(creds, {"ALPACA_API_KEY": NEW_KEY, "ALPACA_API_SECRET": NEW_SECRET})
        result = await engine.submit(market("AAPL", Side.BUY, 2))
        assert result.order is not None, result.rejection
        assert server.orders_by_key(NEW_KEY) == 1
        assert broker.credential_rotations == 1
        assert engine.portfolio.quantity("AAPL") == 5
        # The kill path's own client was rebuilt too.
        report = await broker.close_all_positions(2.0)
        assert report.closed == ["AAPL"], report.errors
        assert all(key == NEW_KEY for key, _ in server.accepted[-1:])
        assert not [r for r in server.refused if r[0] == NEW_KEY]
    finally:
        await broker.close()


@pytest.mark.anyio
async def test_a_half_written_pair_keeps_the_last_good_clients(fake: tuple[FakeAlpaca, str]) -> None:
    _, address = fake
    pair = [KEY, SECRET]
    broker = AlpacaBroker(
        KEY,
        SECRET,
        url_override=f"http://{address}",
        timeout_seconds=5.0,
        credentials=lambda: (pair[0], pair[1]),
    )
    try:
        pair[1] = ""  # a key missing mid-rotation
        assert broker.refresh_credentials() is False
        assert (await broker.account()).cash > 0
    finally:
        await broker.close()


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    """Per use it costs a stat; the file is read only when its identity moved."""
    mount(tmp_path, {"token": OLD_TOKEN})
    source = SecretFile(tmp_path / "token")
    source.current()
    for _ in range(100):
        source.current()
    assert source.reloads == 1
