"""The runbook's curl with the API server down, on real pods: the safety API on a NodePort Service
(spec.safety.expose), admitted by the safety NetworkPolicy only from expose.sourceRanges.

Own TradingSystem in its own namespace, created with no image: its pods run the chart's image, which the
operator got from the chart (QUANTZOO_OPERATOR_DEFAULT_IMAGE). Then:
- a pod in another namespace reaches the node port while its address is in sourceRanges, and is refused
  once sourceRanges no longer holds it (the ipBlock decides, not the Service);
- with kube-apiserver stopped, the runbook's curl (docs/RUNBOOK.md, verbatim) to the node port on the
  node's address halts the engine, seen on the engine's own /state by pod IP; the API server is restarted
  in a `finally`.

What this does not model: a client on another machine. The curl comes from this host, which is the node
(kube-router admits a node's own traffic to its pods, as kubelet probes need); a remote client is judged
by the ipBlock as the probe pods are. One node, so the safety pod's preference for another node than the
engine's cannot be met: it is checked to be there, and that the pod still runs.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from hack.devcluster import node
from tests.pods import ownsystem, realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NS = "deploy-nodeport"
OUTSIDE_NS = "deploy-outside"
NAME = "nodeport"
NODE_PORT = 31888


def expose(ranges: list[str]) -> dict:
    return {"expose": {"type": "NodePort", "nodePort": NODE_PORT, "sourceRanges": ranges}}


def spec(ranges: list[str]) -> dict:
    return {
        "symbols": ["AAPL"],
        "strategy": {"name": "noop"},
        "engine": {"nodeSelector": {"kubernetes.io/hostname": node.NODE_NAME}},
        "safety": expose(ranges),
    }


def engine_state(pod: dict) -> dict:
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8001/state", timeout=5) as resp:
        return json.load(resp)


def test_runbook_curl_on_the_node_port_halts_the_engine_with_the_api_server_down(release):
    url = f"http://{node.NODE_IP}:{NODE_PORT}/status"
    with ownsystem.trading_system(release, NS, NAME, spec([f"{node.NODE_IP}/32", node.CLUSTER_CIDR])) as pods:
        engine, safety = pods["engine"], pods["safety"]
        # The chart's image, passed by the operator: the TradingSystem names none.
        chart_image = release.node.app_image
        assert engine["spec"]["containers"][0]["image"] == chart_image
        assert safety["spec"]["containers"][0]["image"] == chart_image
        assert engine["spec"]["nodeSelector"] == {"kubernetes.io/hostname": node.NODE_NAME}
        (away,) = safety["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert (
            away["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "engine"
        )
        svc = realpods.kubectl_json(release, "-n", NS, "get", "svc", f"{NAME}-safety")["spec"]
        assert (svc["type"], svc["ports"][0]["nodePort"]) == ("NodePort", NODE_PORT)

        # A source inside sourceRanges (the pod network) gets in; outside it, it is refused.
        ownsystem.namespace(release, OUTSIDE_NS, restricted=False)
        try:
            inside = realpods.probe_from(release, OUTSIDE_NS, "probe-inside", [url])
            assert inside[url] == 200, inside
            ownsystem.apply(release, NS, NAME, spec([f"{node.NODE_IP}/32"]))

            def narrowed() -> bool:
                np = realpods.kubectl_json(release, "-n", NS, "get", "networkpolicy", f"{NAME}-safety")
                return [p for p in np["spec"]["ingress"][0]["from"] if "ipBlock" in p] == [
                    {"ipBlock": {"cidr": f"{node.NODE_IP}/32"}}
                ]

            realpods.wait_for(narrowed, 60, "the safety NetworkPolicy narrowed to the node's address")
            # The policy controller applies the change a moment later: a few probes, each a new pod.
            attempts: list[object] = []
            for attempt in range(4):
                outside = realpods.probe_from(release, OUTSIDE_NS, f"probe-outside-{attempt}", [url])
                attempts.append(outside[url])
                if outside[url] != 200:
                    break
            assert attempts[-1] != 200, f"still admitted from outside sourceRanges: {attempts}"
        finally:
            release.plane.kubectl("delete", "namespace", OUTSIDE_NS, "--wait=false", check=False)

        # The runbook's commands, verbatim, with the API server stopped.
        token = ownsystem.secret_token(release, NS, f"{NAME}-safety-token")
        commands = ownsystem.runbook_block("Then, with the API server down")
        env = {**os.environ, "SAFETY_URL": f"http://{node.NODE_IP}:{NODE_PORT}", "SAFETY_API_TOKEN": token}
        assert engine_state(engine)["trading_state"] == "ACTIVE"
        release.plane.stop_apiserver()
        try:
            res = ownsystem.bash(commands, env, timeout=60)
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip(), res.stderr  # the safety service answered (the checks follow)
            # Halted by the kill switch the curl carried (without the API server the engine would also
            # halt on its own a while later, for want of proof of the switch's state or of its Lease).
            state = realpods.wait_for(
                lambda: (s := engine_state(engine))["kill_switch"]["engaged"] and s,
                30,
                "the engine halted by the kill switch with the API server down",
            )
            assert state["trading_state"] == "HALTED", state
            assert "kill_switch_engaged" in state["halt_reasons"], state
        finally:
            release.plane.start_apiserver()
        # Back up: the safety service's pending engagement reaches spec.killSwitch.
        realpods.wait_for(
            lambda: (
                realpods.kubectl_json(release, "-n", NS, "get", "ts", NAME)["spec"]
                .get("killSwitch", {})
                .get("engaged")
            ),
            90,
            "spec.killSwitch.engaged written once the API server is back",
        )
