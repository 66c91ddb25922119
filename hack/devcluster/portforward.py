"""`kubectl port-forward` to a Service, as the runbook assumes (the safety API on localhost), for the demo
and the benchmarks on the real node."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def port_forward(
    kubectl: Path, kubeconfig: Path, namespace: str, service: str, local: int, remote: int
) -> Iterator[int]:
    """`kubectl -n <namespace> port-forward svc/<service> <local>:<remote>` until the block ends; yields
    `local` once kubectl listens."""
    argv = [str(kubectl), f"--kubeconfig={kubeconfig}", "-n", namespace]
    argv += ["port-forward", f"svc/{service}", f"{local}:{remote}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "Forwarding from 127.0.0.1:<local> -> <remote>" once it listens
        if "Forwarding from" not in first:
            raise RuntimeError(f"kubectl port-forward: {first.strip()}")
        yield local
    finally:
        proc.terminate()
        proc.wait(10)
