"""TradingAccounts and the operator against the real control plane (issue #13, item 1): a system with
spec.accountRef gets the account's broker, credentials and mode, and the account's name and limits in
its engine's environment; a missing account or credentials Secret is a clear condition and no engine
is made; the account lists its systems; and the CRD refuses accountRef beside a credentialsSecret."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from quantzoo_api import GROUP, VERSION
from quantzoo_api.accounts import ACCOUNT_PLURAL

from tests.operator.harness import TS, OperatorProcess, wait_for

ACCOUNT_SPEC = {
    "mode": "paper",
    "broker": {"kind": "alpaca", "credentialsSecret": "acct-keys", "baseUrl": "http://127.0.0.1:9"},
    "limits": {"maxGrossExposure": 40000, "maxDailyLoss": 2000, "maxOrdersPerMinute": 90},
}
SYSTEM_SPEC = {"accountRef": {"name": "shared"}, "symbols": ["AAPL"], "broker": {"initialCash": 25000}}


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_account(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingAccount",
        "metadata": {"name": "shared", "namespace": namespace},
        "spec": spec,
    }
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, ACCOUNT_PLURAL, body)


def account(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, ACCOUNT_PLURAL, "shared")


def account_ready(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    conds = (account(api, namespace).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), {})


def accounts_in(api: client.ApiClient, namespace: str) -> list[str]:
    listed = custom(api).list_namespaced_custom_object(GROUP, VERSION, namespace, ACCOUNT_PLURAL)
    return [a["metadata"]["name"] for a in listed["items"]]


def engine_env(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    sts = client.AppsV1Api(api).read_namespaced_stateful_set(f"{name}-engine", namespace)
    return {e.name: e.value for e in sts.spec.template.spec.containers[0].env if e.value is not None}


def statefulsets(api: client.ApiClient, namespace: str) -> list[str]:
    return [s.metadata.name for s in client.AppsV1Api(api).list_namespaced_stateful_set(namespace).items]


def test_the_crd_refuses_an_account_beside_the_systems_own_credentials(ts: TS, namespace: str) -> None:
    spec = {**SYSTEM_SPEC, "broker": {"kind": "alpaca", "credentialsSecret": "own-keys"}}
    with pytest.raises(client.ApiException) as refused:
        ts.create(namespace, "both", spec)
    assert refused.value.status == 422
    assert "set either accountRef" in refused.value.body


def test_a_system_in_an_account_trades_with_the_accounts_broker_and_limits(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    # No account yet: Degraded, naming it; no engine is made.
    ts.create(namespace, "alpha", SYSTEM_SPEC)
    cond = ts.wait_condition(namespace, "alpha", "Degraded", "True", "AccountMissing")
    assert "'shared'" in cond["message"]
    assert statefulsets(kube_api, namespace) == []

    # The account, without its credentials Secret: the account says so, and so does the system.
    create_account(kube_api, namespace, ACCOUNT_SPEC)
    ready = wait_for(
        lambda: (
            account_ready(kube_api, namespace).get("reason") == "CredentialsSecretMissing"
            and account_ready(kube_api, namespace)
        ),
        what="the account's Ready=False CredentialsSecretMissing",
    )
    assert ready["status"] == "False"
    assert "acct-keys" in ready["message"]
    assert ready["observedGeneration"] == account(kube_api, namespace)["metadata"]["generation"]
    ts.wait_condition(namespace, "alpha", "Degraded", "True", "CredentialsSecretMissing")
    assert statefulsets(kube_api, namespace) == []

    client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="acct-keys"),
            string_data={"ALPACA_API_KEY": "k-account", "ALPACA_API_SECRET": "s-account"},
        ),
    )
    env = wait_for(
        lambda: (
            "alpha-engine" in statefulsets(kube_api, namespace) and engine_env(kube_api, namespace, "alpha")
        ),
        40,
    )
    assert env["QUANTZOO_ACCOUNT_NAME"] == "shared"
    assert json.loads(env["QUANTZOO_ACCOUNT_LIMITS"])["maxGrossExposure"] == 40000
    config = client.CoreV1Api(kube_api).read_namespaced_config_map("alpha-config", namespace)
    rendered = json.loads(config.data["engine.json"])["spec"]
    assert rendered["broker"] == {
        "kind": "alpaca",
        "credentialsSecret": "acct-keys",
        "baseUrl": "http://127.0.0.1:9",
        "initialCash": 25000.0,
    }
    assert rendered["mode"] == "paper"
    volumes = (
        client.AppsV1Api(kube_api)
        .read_namespaced_stateful_set("alpha-engine", namespace)
        .spec.template.spec.volumes
    )
    assert "acct-keys" in {v.secret.secret_name for v in volumes if v.secret is not None}

    # The account lists its system and is Ready.
    wait_for(
        lambda: (
            account_ready(kube_api, namespace).get("status") == "True"
            and (account(kube_api, namespace).get("status") or {}).get("systems") == ["alpha"]
        ),
        what="the account Ready and listing alpha",
    )

    # A change of the account's limits reaches the engine at once (not at the next resync).
    custom(kube_api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ACCOUNT_PLURAL,
        "shared",
        {"spec": {"limits": {"maxGrossExposure": 12345}}},
        _content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: (
            json.loads(engine_env(kube_api, namespace, "alpha").get("QUANTZOO_ACCOUNT_LIMITS", "{}")).get(
                "maxGrossExposure"
            )
            == 12345
        ),
        what="the new limit in the engine's environment",
    )

    # Drift on the engine StatefulSet is restored WITH the account (a restore built from the bare
    # TradingSystem once dropped the account's env and broker: the engine would have traded elsewhere).
    client.AppsV1Api(kube_api).patch_namespaced_stateful_set(
        "alpha-engine",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "engine",
                                "env": [{"name": "QUANTZOO_ACCOUNT_NAME", "value": "tampered"}],
                            }
                        ]
                    }
                }
            }
        },
        _content_type="application/strategic-merge-patch+json",
    )
    wait_for(
        lambda: (
            engine_env(kube_api, namespace, "alpha").get("QUANTZOO_ACCOUNT_NAME") == "shared"
            and "QUANTZOO_ACCOUNT_LIMITS" in engine_env(kube_api, namespace, "alpha")
        ),
        what="the account's env restored on the engine StatefulSet",
    )
    config = client.CoreV1Api(kube_api).read_namespaced_config_map("alpha-config", namespace)
    assert json.loads(config.data["engine.json"])["spec"]["broker"]["kind"] == "alpaca"

    # A delete of the account in use leaves it Terminating (the in-use finalizer) and holds its system.
    custom(kube_api).delete_namespaced_custom_object(GROUP, VERSION, namespace, ACCOUNT_PLURAL, "shared")
    ts.wait_condition(namespace, "alpha", "Halted", "True", "HeldByAccount")
    time.sleep(10)  # two of the in-use check's retries (every 5 s)
    terminating = account(kube_api, namespace)
    assert terminating["metadata"].get("deletionTimestamp"), terminating["metadata"]

    # Its last system deleted, the account goes.
    ts.delete(namespace, "alpha")
    wait_for(lambda: "shared" not in accounts_in(kube_api, namespace), 40, what="the account gone")


def test_an_account_with_the_simulated_broker_is_refused_for_sharing(
    operator: OperatorProcess, ts: TS, namespace: str, kube_api: client.ApiClient
) -> None:
    create_account(kube_api, namespace, {"mode": "paper"})
    ts.create(namespace, "alpha", SYSTEM_SPEC)
    cond = ts.wait_condition(namespace, "alpha", "Degraded", "True", "AccountNotShareable")
    assert "simulated" in cond["message"]
    wait_for(
        lambda: account_ready(kube_api, namespace).get("reason") == "AccountNotShareable", what="account"
    )
    assert statefulsets(kube_api, namespace) == []
