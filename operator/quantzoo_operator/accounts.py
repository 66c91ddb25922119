"""TradingAccounts: what a TradingSystem with `spec.accountRef` trades with, and the account's status.

A system in an account gets the account's broker (kind, credentials Secret, base URL) and mode in the
spec its engine reads (quantzoo_api.accounts.effective_spec), and the account's name and limits in its
engine's environment (builders/account_env.py). The old form (broker and credentials in the
TradingSystem itself, no accountRef) works as before: the broker account is that system's alone. The
CRD refuses a system that sets both accountRef and broker.credentialsSecret.

A missing account, or one whose broker engines cannot share (simulated: a book inside one engine
process), is a Degraded condition on the system naming the account, and no child is created or updated,
so no engine starts trading with it.

The account's own status: `systems` (the TradingSystems in its namespace that name it), and a Ready
condition (observedGeneration): False while its credentials Secret is missing or incomplete (the
message names the Secret and the keys, never a value), or its broker is not shareable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from quantzoo_api import API_VERSION
from quantzoo_api.accounts import ACCOUNT_KIND, TradingAccountSpec, effective_spec, parse_account_spec
from quantzoo_api.conditions import ConditionType, Reason
from quantzoo_api.types import BrokerKind

from quantzoo_operator.builders.common import System
from quantzoo_operator.kube import APPLY_PATCH, Kube, collection_path, object_path
from quantzoo_operator.status import condition

CREDENTIAL_KEYS = ("ALPACA_API_KEY", "ALPACA_API_SECRET")
# Its own field manager: server-side apply removes only what this manager set before and omits now,
# so the account's other status writers (the kill-switch levels) keep their fields.
STATUS_FIELD_MANAGER = "quantzoo-operator-accounts"


class AccountProblem(Exception):
    """The account a TradingSystem names cannot be used; `reason` says why (a Reason)."""

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason = reason


def shareable_problem(name: str, spec: TradingAccountSpec) -> str | None:
    if spec.broker.kind is BrokerKind.SIMULATED:
        return (
            f"TradingAccount {name!r} has broker.kind simulated: the simulated broker is a book inside one "
            "engine process, so systems cannot share it; give the account broker.kind alpaca"
        )
    return None


async def resolve(kube: Kube, system: System) -> System:
    """The system as its engine runs it: in an account, with the account's broker and mode."""
    ref = system.spec.account_ref
    if ref is None:
        return system
    body = await kube.get(API_VERSION, ACCOUNT_KIND, system.namespace, ref.name)
    if body is None:
        raise AccountProblem(
            f"spec.accountRef: no TradingAccount {ref.name!r} in namespace {system.namespace!r}; "
            "the engine is not started (or updated) until it exists",
            Reason.ACCOUNT_MISSING,
        )
    try:
        account = parse_account_spec(body.get("spec"))
    except ValidationError as exc:
        raise AccountProblem(
            f"TradingAccount {ref.name!r}: spec not understood: {exc}", Reason.ACCOUNT_NOT_SHAREABLE
        ) from None
    if problem := shareable_problem(ref.name, account):
        raise AccountProblem(problem, Reason.ACCOUNT_NOT_SHAREABLE)
    return dataclasses.replace(
        system,
        spec=effective_spec(system.spec, account),
        account_name=ref.name,
        account_limits=account.limits,
    )


# --- the account's status ----------------------------------------------------------------------------
async def systems_of(kube: Kube, namespace: str, account: str) -> list[dict[str, Any]]:
    listed = await kube.run(kube.request, "GET", collection_path(API_VERSION, "TradingSystem", namespace))
    return sorted(
        (
            ts
            for ts in listed.get("items") or []
            if ((ts.get("spec") or {}).get("accountRef") or {}).get("name") == account
        ),
        key=lambda ts: ts["metadata"]["name"],
    )


async def ready_condition(kube: Kube, body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    try:
        spec = parse_account_spec(body.get("spec"))
    except ValidationError as exc:
        return condition(
            ConditionType.READY, False, Reason.INVALID_SPEC, f"spec not understood: {exc}", generation
        )
    if problem := shareable_problem(name, spec):
        return condition(ConditionType.READY, False, Reason.ACCOUNT_NOT_SHAREABLE, problem, generation)
    secret_name = spec.broker.credentials_secret or ""
    secret = await kube.get("v1", "Secret", namespace, secret_name)
    if secret is None:
        return condition(
            ConditionType.READY,
            False,
            Reason.CREDENTIALS_SECRET_MISSING,
            f"broker.credentialsSecret {secret_name!r}: no such Secret in namespace {namespace!r}; create it "
            f"with keys {' and '.join(CREDENTIAL_KEYS)} (no system of this account starts until then)",
            generation,
        )
    missing = [key for key in CREDENTIAL_KEYS if not (secret.get("data") or {}).get(key)]
    if missing:
        return condition(
            ConditionType.READY,
            False,
            Reason.CREDENTIALS_SECRET_INVALID,
            f"broker.credentialsSecret {secret_name!r} has no (or an empty) {' and '.join(missing)}",
            generation,
        )
    return condition(
        ConditionType.READY,
        True,
        Reason.ACCOUNT_READY,
        f"broker {spec.broker.kind}, mode {spec.mode}",
        generation,
    )


async def write_status(kube: Kube, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Compute and apply the account's status; returns the systems that name it."""
    meta = body.get("metadata") or {}
    namespace, name = meta["namespace"], meta["name"]
    systems = await systems_of(kube, namespace, name)
    ready = await ready_condition(kube, body)
    previous = {c.get("type"): c for c in ((body.get("status") or {}).get("conditions") or [])}
    old = previous.get(ready["type"])
    if old is not None and old.get("status") == ready["status"] and old.get("lastTransitionTime"):
        ready["lastTransitionTime"] = old["lastTransitionTime"]
    else:
        ready["lastTransitionTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "observedGeneration": meta.get("generation"),
        "systems": [ts["metadata"]["name"] for ts in systems],
        "conditions": [ready],
    }
    patch = {
        "apiVersion": API_VERSION,
        "kind": ACCOUNT_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "status": status,
    }
    await kube.run(
        kube.request,
        "PATCH",
        object_path(API_VERSION, ACCOUNT_KIND, namespace, name) + "/status",
        query=[("fieldManager", STATUS_FIELD_MANAGER), ("force", "true")],
        body=patch,
        content_type=APPLY_PATCH,
    )
    return systems


async def list_system(kube: Kube, namespace: str, name: str, system: str) -> None:
    """After a system in the account reconciled: write the account's status if it does not list the
    system yet or is not Ready (one read per reconcile otherwise; the account's resync timer drops
    systems that left)."""
    body = await kube.get(API_VERSION, ACCOUNT_KIND, namespace, name)
    if body is None:
        return
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.READY), {})
    # A system reconciled in it: its credentials are there now, so a Ready False is stale too.
    if system not in (status.get("systems") or []) or ready.get("status") != "True":
        await write_status(kube, body)
