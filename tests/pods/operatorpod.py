"""The chart's operator as its Deployment's real pod on the session's node: found, SIGKILLed through the
node's containerd (the kubelet starts the container again), its restart waited for, and its process's open
file descriptors counted on the host (this host is the node)."""

from __future__ import annotations

import os

from hack.devcluster import node
from tests.pods import realpods
from tests.pods.realpods import OPERATOR_NS

SELECTOR = "app.kubernetes.io/component=operator"


def pod(cluster: node.RealCluster, timeout: float = 180) -> dict:
    return realpods.one_ready_pod(cluster, OPERATOR_NS, SELECTOR, timeout)


def container(pod: dict) -> str:
    return realpods.container_id(pod, pod["spec"]["containers"][0]["name"])


def restarts(pod: dict) -> int:
    return int(pod["status"]["containerStatuses"][0]["restartCount"])


def sigkill(cluster: node.RealCluster, container_id: str) -> None:
    cluster.node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)


def restarted(cluster: node.RealCluster, before: int, timeout: float = 240) -> dict:
    """The operator pod once its container was started again (restartCount above `before`) and is Ready."""

    def again() -> dict | None:
        found = [
            p
            for p in realpods.pods(cluster, OPERATOR_NS, SELECTOR)
            if realpods.ready(p) and restarts(p) > before
        ]
        return found[0] if found else None

    return realpods.wait_for(again, timeout, "the operator's container restarted and Ready")


def fd_count(cluster: node.RealCluster) -> int:
    """Open descriptors of the operator's process (its container's main process: the image's CMD)."""
    pid = realpods.task_pid(cluster, container(pod(cluster)))
    return len(os.listdir(f"/proc/{pid}/fd"))
