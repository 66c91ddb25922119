"""Ctrl-C in the middle of `make demo` leaves nothing behind: no control plane, no engine or safety process,
no operator, no temporary folder."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hack.devcluster import node

REPO = Path(__file__).resolve().parents[2]

# The wait for step 6 (240 s) and the teardown (90 s) fit inside the test's own timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _children() -> dict[int, list[int]]:
    """{parent pid: child pids} for every process on the machine, from /proc."""
    tree: dict[int, list[int]] = {}
    for pid, stat in node.proc_files("stat"):
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(pid)
    return tree


def descendants(pid: int) -> set[int]:
    tree, out, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _read_lines(proc: subprocess.Popen, lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def test_ctrl_c_mid_demo_cleans_up_everything() -> None:
    """On real pods (hack/devcluster/node.py): besides processes and the folder, the node's network
    namespaces, interfaces and iptables chains are gone too."""
    problem = node.missing_prerequisites()
    if problem:
        pytest.fail(problem) if os.environ.get("CI") else pytest.skip(problem)
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hack.demo"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    spawned: set[int] = set()
    # A thread reads the lines as they come: a select() on the pipe cannot see lines a buffered readline()
    # has already taken in, and steps 6-10 take about 1 s, so the interrupt must follow step 6 at once.
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        # Interrupt once the engine and safety processes are up and trading (step 5 finished).
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                spawned |= descendants(proc.pid)
                continue
            if line is None:
                pytest.fail("the demo ended before step 6:\n" + "".join(output[-40:]))
            output.append(line)
            if line.startswith("[6/"):
                break
        else:
            pytest.fail("the demo did not reach step 6:\n" + "".join(output[-40:]))
        spawned |= descendants(proc.pid)
        workdirs = {p for p in Path("/tmp").glob("quantzoo-demo-*") if p.stat().st_ctime >= started}
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the demo in the foreground
        assert workdirs, "the demo's temporary folder was not found"
        assert len(spawned) >= 7, "control plane (4), containerd, kubelet, kube-proxy, kube-router expected"
        proc.wait(90)
        reader.join(10)
        while not lines.empty():
            if (rest := lines.get_nowait()) is not None:
                output.append(rest)
    finally:
        if proc.poll() is None:  # a failed wait: still stop it with its teardown, not SIGKILL alone
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = "".join(output)
    assert proc.returncode == 130, text[-3000:]
    assert "interrupted: cleaning up" in text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in spawned):
        time.sleep(0.2)
    assert not [p for p in spawned if alive(p)], "processes outlived the demo"
    assert not [p for p in workdirs if p.exists()], "the demo's temporary folder is still there"
    assert not Path(f"/sys/class/net/{node.BRIDGE}").exists(), "the pod bridge is still there"
    assert not Path(f"/sys/class/net/{node.NODE_IFACE}").exists(), "the node's interface is still there"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "cni-" not in netns, netns
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert node.FW_CHAIN not in rules
    assert "KUBE-SERVICES" not in rules
