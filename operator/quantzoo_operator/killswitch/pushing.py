"""Kill-switch I/O: find the engine replicas, read the admin token, push to every replica at once.

Each push has a hard deadline (`push_timeout_seconds`): an unreachable replica costs that much, never
more, and never delays the others (they are pushed concurrently). The admin token is read from the
`<name>-engine-admin` Secret once and cached; a 401 drops the cached token and the push is retried at
once with a fresh read (the Secret was rotated). The token is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import httpx
from quantzoo_api.engine_client import EngineUnreachable, get_state, push_kill_switch
from quantzoo_api.engine_pods import REFUSED_BY_POLICY, Target, engine_pod_selector, permitted, select_targets
from quantzoo_api.killswitch import KillSwitchCommand, TradingState

from quantzoo_operator import names
from quantzoo_operator.builders.admin_secret import read_token
from quantzoo_operator.killswitch.planning import Ack
from quantzoo_operator.kube import Kube, KubeError

log = logging.getLogger(__name__)


class TokenUnavailable(Exception):
    pass


def _unauthorized(exc: EngineUnreachable) -> bool:
    return str(exc).endswith("HTTP 401")


class TokenCache:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._tokens: dict[tuple[str, str], str] = {}
        self._warming: dict[tuple[str, str], asyncio.Task[None]] = {}

    def cached(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._tokens

    def warm(self, namespace: str, name: str) -> None:
        """Read the token ahead of any kill, in the background and on the general API pool (not the kill
        path's): a kill-all of many systems then costs no Secret read per system. A failure (no Secret
        yet, API server unreachable) is left for the next warm-up or the push itself."""
        key = (namespace, name)
        if key in self._tokens or key in self._warming:
            return
        task = asyncio.get_running_loop().create_task(self._warm(namespace, name))
        self._warming[key] = task
        task.add_done_callback(lambda t: self._warming.pop(key) if self._warming.get(key) is t else None)

    async def _warm(self, namespace: str, name: str) -> None:
        try:
            await self.get(namespace, name, kill=False)
        except TokenUnavailable:
            pass
        except Exception as exc:
            log.debug("token warm-up for %s/%s failed: %s", namespace, name, type(exc).__name__)

    async def get(self, namespace: str, name: str, *, kill: bool = True) -> str:
        key = (namespace, name)
        if key in self._tokens:
            return self._tokens[key]
        secret_name = names.engine_admin_secret(name)
        try:
            secret = await self.kube.get("v1", "Secret", namespace, secret_name, kill=kill)
        except KubeError as exc:
            raise TokenUnavailable(f"Secret {secret_name}: HTTP {exc.status}") from None
        token = read_token(secret) if secret else None
        if not token:
            raise TokenUnavailable(f"Secret {secret_name} has no token")
        self._tokens[key] = token
        return token

    def invalidate(self, namespace: str, name: str) -> None:
        self._tokens.pop((namespace, name), None)
        task = self._warming.pop((namespace, name), None)
        if task is not None:
            task.cancel()


class Pusher:
    def __init__(self, kube: Kube, *, push_timeout: float, networks: Iterable[str] = ()) -> None:
        self.kube = kube
        self.push_timeout = push_timeout
        self.networks = tuple(networks)
        self.tokens = TokenCache(kube)
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64), trust_env=False
        )

    async def close(self) -> None:
        await self.http.aclose()

    def warm_token(self, namespace: str, name: str) -> None:
        self.tokens.warm(namespace, name)

    async def targets(self, namespace: str, name: str, *, terminating: bool = False) -> list[Target]:
        pods = await self.kube.list_pods(namespace, engine_pod_selector(name), kill=True)
        return select_targets(pods, terminating=terminating)

    async def _push_one(self, target: Target, command: KillSwitchCommand, token: str) -> Ack:
        if not permitted(target.endpoint, self.networks):
            raise EngineUnreachable(f"{target.endpoint}: {REFUSED_BY_POLICY}")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.push_timeout):
                ack = await push_kill_switch(
                    self.http, target.endpoint, token, command, timeout=self.push_timeout
                )
        except TimeoutError:
            raise EngineUnreachable(f"{target.endpoint}: no answer within {self.push_timeout:g}s") from None
        return Ack(target=target, ack=ack, latency_ms=(time.perf_counter() - started) * 1000)

    async def push(
        self, namespace: str, name: str, targets: Iterable[Target], command: KillSwitchCommand
    ) -> tuple[list[Ack], dict[str, str]]:
        """Push `command` to every target concurrently: (acknowledgements, {pod: why it failed})."""
        targets = list(targets)
        refused = {
            t.pod: f"{t.endpoint}: {REFUSED_BY_POLICY}"
            for t in targets
            if not permitted(t.endpoint, self.networks)
        }
        targets = [t for t in targets if t.pod not in refused]
        if not targets:  # nothing to dial: no admin token read either
            return [], refused
        try:
            token = await self.tokens.get(namespace, name)
        except TokenUnavailable as exc:
            return [], refused | {t.pod: f"admin token unavailable ({exc})" for t in targets}
        results = await asyncio.gather(
            *(self._push_one(t, command, token) for t in targets), return_exceptions=True
        )
        if any(isinstance(r, EngineUnreachable) and _unauthorized(r) for r in results):
            # The Secret was rotated (or the cache is stale): read it again and retry those at once.
            self.tokens.invalidate(namespace, name)
            retry = [
                t
                for t, r in zip(targets, results, strict=True)
                if isinstance(r, EngineUnreachable) and _unauthorized(r)
            ]
            try:
                token = await self.tokens.get(namespace, name)
                again = await asyncio.gather(
                    *(self._push_one(t, command, token) for t in retry), return_exceptions=True
                )
                redo = dict(zip([t.uid for t in retry], again, strict=True))
                results = [redo.get(t.uid, r) for t, r in zip(targets, results, strict=True)]
            except TokenUnavailable:
                pass
        acks: list[Ack] = []
        failures: dict[str, str] = dict(refused)
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, Ack):
                acks.append(result)
            elif isinstance(result, EngineUnreachable):
                failures[target.pod] = str(result)
            elif isinstance(result, BaseException):
                failures[target.pod] = f"{target.endpoint}: {type(result).__name__}"
        return acks, failures

    async def trading_state(self, target: Target) -> TradingState | None:
        """What a replica says it is doing (`GET /state`), or None if it does not answer."""
        if not permitted(target.endpoint, self.networks):
            return None
        try:
            async with asyncio.timeout(self.push_timeout):
                state = await get_state(self.http, target.endpoint, timeout=self.push_timeout)
        except (EngineUnreachable, TimeoutError, ValueError):
            return None
        raw = (state.get("trading_state") or state.get("tradingState")) if isinstance(state, dict) else None
        try:
            return TradingState(raw) if raw else None
        except ValueError:
            return None
