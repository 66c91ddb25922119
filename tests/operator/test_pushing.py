"""The pusher's API economy at scale (no cluster; a recording stand-in for the operator's Kube):
a target outside the permitted networks costs no admin-token read, and the token can be read ahead of
a kill on the general API pool so a kill-all of many systems reads no Secret on the kill path."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from quantzoo_api.engine_pods import Target
from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_operator.killswitch.pushing import Pusher


class RecordingKube:
    """Answers Secret reads like the API server; records (name, kill path?) of each."""

    def __init__(self, token: str | None = "s3cret") -> None:  # noqa: S107 - a test value
        self.token = token
        self.reads: list[tuple[str, bool]] = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str, *, kill: bool = False) -> Any:
        assert (api_version, kind) == ("v1", "Secret")
        self.reads.append((name, kill))
        await asyncio.sleep(0)
        if self.token is None:
            return None
        return {"data": {"token": base64.b64encode(self.token.encode()).decode()}}


COMMAND = KillSwitchCommand(engaged=True, reason="test", operator="t", source="operator", generation=2)


def test_a_target_outside_the_push_networks_costs_no_token_read() -> None:
    async def scenario() -> None:
        kube = RecordingKube()
        pusher = Pusher(kube, push_timeout=1.0, networks=("127.0.0.0/8",))  # type: ignore[arg-type]
        simulated = Target("demo-engine-0", "u0", "http://10.244.0.7:8001")
        acks, failures = await pusher.push("ns", "demo", [simulated], COMMAND)
        assert acks == []
        assert failures == {"demo-engine-0": "http://10.244.0.7:8001: outside the permitted push networks"}
        assert kube.reads == []
        await pusher.close()

    asyncio.run(scenario())


def test_the_token_is_warmed_on_the_general_pool_once_and_then_cached() -> None:
    async def scenario() -> None:
        kube = RecordingKube()
        pusher = Pusher(kube, push_timeout=1.0, networks=("127.0.0.0/8",))  # type: ignore[arg-type]
        pusher.warm_token("ns", "demo")
        pusher.warm_token("ns", "demo")  # one read in flight at most
        await asyncio.sleep(0.01)
        assert kube.reads == [("demo-engine-admin", False)]
        assert await pusher.tokens.get("ns", "demo") == "s3cret"
        pusher.warm_token("ns", "demo")  # cached: nothing to read
        await asyncio.sleep(0.01)
        assert kube.reads == [("demo-engine-admin", False)]
        await pusher.close()

    asyncio.run(scenario())


def test_a_failed_warm_up_is_retried_later_and_the_push_still_reads_on_the_kill_path() -> None:
    async def scenario() -> None:
        kube = RecordingKube(token=None)  # the Secret is not there yet
        pusher = Pusher(kube, push_timeout=1.0, networks=())  # type: ignore[arg-type]
        pusher.warm_token("ns", "demo")
        await asyncio.sleep(0.01)
        assert not pusher.tokens.cached("ns", "demo")
        kube.token = "later"
        pusher.warm_token("ns", "demo")
        await asyncio.sleep(0.01)
        assert pusher.tokens.cached("ns", "demo")
        assert kube.reads == [("demo-engine-admin", False), ("demo-engine-admin", False)]
        pusher.tokens.invalidate("ns", "demo")  # a 401: the push reads it again, on the kill path
        assert await pusher.tokens.get("ns", "demo") == "later"
        assert kube.reads[-1] == ("demo-engine-admin", True)
        await pusher.close()

    asyncio.run(scenario())
