"""SIGTERM wins the race with the deletion's watch event, on a real engine process and the real API server.

A foreground deletion (Argo CD's default) has the garbage collector delete the engine's pod while the
deletion's event may still be on its way to the engine's watch. Here the watch's connection goes through
tests/faults/delay_proxy.py, black-holed just long enough to swallow the deletion's event; the route then
comes back and SIGTERM arrives at once, before the broken watch has noticed anything. The engine must read its
TradingSystem as it stops and flatten, as `trading.quantzoo.io/flatten-on-delete` asks.

Not modelled: the kubelet and the garbage collector (the SIGTERM is sent by the test, as the kubelet would).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client
from quantzoo_api import GROUP, PLURAL, VERSION

from tests.faults.delay_proxy import DelayProxy
from tests.faults.watching_engine import (
    SPEC,
    kubeconfig_via,
    start_watching_engine,
    wait_state,
)

pytestmark = pytest.mark.slow

HELD_BY_THE_TEST = "test.quantzoo.io/hold"


def test_sigterm_before_the_deletions_event_still_flattens(
    cluster, kube_api, namespace, proxy: DelayProxy, tmp_path: Path
) -> None:
    objects = client.CustomObjectsApi(kube_api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TradingSystem",
        "metadata": {
            "name": "acct",
            "namespace": namespace,
            "annotations": {"trading.quantzoo.io/flatten-on-delete": "true"},
            # Stands in for the operator's finalizer: the TradingSystem stays, being deleted.
            "finalizers": [HELD_BY_THE_TEST],
        },
        "spec": SPEC,
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    kubeconfig = kubeconfig_via(cluster.kubeconfig, proxy, tmp_path / "kubeconfig")
    engine = start_watching_engine(tmp_path, kubeconfig, namespace, "acct", "engine-a", {})
    try:
        wait_state(engine, lambda s: s["trading_state"] == "ACTIVE", 20, "ACTIVE")
        assert engine.place_order().status_code == 201
        wait_state(engine, lambda s: s["orders"]["filled"] == 1, 10, "the market order filled")
        assert engine.positions() == {"AAPL": 1.0}

        proxy.blackhole = True  # the watch's stream goes silent: the deletion's event is lost on the way
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "acct")
        time.sleep(0.5)
        assert engine.state()["kill_switch"]["engaged"] is False, "the watch saw the deletion after all"
        proxy.blackhole = False  # new connections work; the watch's stream is broken and has not noticed
        engine.proc.terminate()
        engine.proc.wait(30)
        saved = json.loads((tmp_path / "engine-a-state" / "engine-state.json").read_text())
        assert saved["state"]["kill_switch"]["engaged"] is True, engine.tail()
        assert saved["state"]["kill_switch"]["reason"] == f"TradingSystem {namespace}/acct is being deleted"
        assert [p for p in saved["positions"]["positions"] if p["quantity"]] == [], engine.tail()
    finally:
        engine.stop()
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "acct", {"metadata": {"finalizers": None}}
        )
