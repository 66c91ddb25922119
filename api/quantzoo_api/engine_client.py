"""Async client for the engine's admin API, used by the operator and the safety service."""

from __future__ import annotations

import httpx

from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH, KillSwitchAck, KillSwitchCommand


class EngineUnreachable(Exception):
    """The engine did not acknowledge (connection refused, timeout, non-2xx)."""


async def push_kill_switch(
    client: httpx.AsyncClient,
    base_url: str,
    token: str,
    command: KillSwitchCommand,
    timeout: float = 2.0,
) -> KillSwitchAck:
    """Push a kill-switch command to one engine replica and return its acknowledgement."""
    try:
        resp = await client.post(
            base_url.rstrip("/") + ENGINE_KILL_SWITCH_PATH,
            content=command.model_dump_json(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise EngineUnreachable(f"{base_url}: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        # Never echo the request (it carries the token header); the status code says enough.
        raise EngineUnreachable(f"{base_url}: HTTP {resp.status_code}")
    return KillSwitchAck.model_validate_json(resp.content)


async def get_state(client: httpx.AsyncClient, base_url: str, timeout: float = 2.0) -> dict:
    """The engine's public `GET /state`."""
    try:
        resp = await client.get(base_url.rstrip("/") + "/state", timeout=timeout)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise EngineUnreachable(f"{base_url}: {type(exc).__name__}") from exc
    return resp.json()
