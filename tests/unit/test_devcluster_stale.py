"""A control plane that a killed run left holding the node's address is stopped before the next start.

Real processes stand in for the left-behind API server and etcd (a copy of bash named kube-apiserver, with
the flags a node-mode control plane has, and a sleep recorded in its run's state.json): only their command
lines and process groups matter here. The real case, a demo SIGKILLed by its test's timeout, made every
later start of the node fail on the address still bound."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from hack.devcluster import node


def _gone(proc: subprocess.Popen) -> bool:
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_control_plane_left_holding_the_nodes_address_is_stopped_with_its_run(tmp_path: Path) -> None:
    workdir = tmp_path / "cluster"
    (workdir / "certs").mkdir(parents=True)
    apiserver_bin = tmp_path / "kube-apiserver"
    shutil.copy(shutil.which("bash") or "/bin/bash", apiserver_bin)
    etcd = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (workdir / "state.json").write_text(json.dumps({"pids": {"etcd": etcd.pid}}))
    flags = [f"--bind-address={node.NODE_IP}", f"--cert-dir={workdir / 'certs'}"]
    apiserver = subprocess.Popen(
        [str(apiserver_bin), "-c", "read -t 600 x", "kube-apiserver", *flags],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    other = subprocess.Popen(  # another run's API server, on another address: not ours to stop
        [str(apiserver_bin), "-c", "read -t 600 x", "kube-apiserver", "--bind-address=127.0.0.1"],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(0.05)  # both have exec'd: their command lines are the ones above
        node.kill_stale_control_planes()
        assert _gone(apiserver), "the API server holding the node's address is still running"
        assert _gone(etcd), "its run's etcd is still running"
        assert not (workdir / "state.json").exists()
        assert other.poll() is None, "an API server on another address was stopped"
    finally:
        for proc in (apiserver, etcd, other):
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
