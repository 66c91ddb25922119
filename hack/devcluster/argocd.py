"""A real Argo CD for a local cluster (the suite's real node): redis-server (Debian), argocd-repo-server and
argocd-application-controller (argo-cd built from Go modules by hack/build-argocd.sh), as local processes.

What a standard install (manifests/install.yaml) would add is made here by hand, minimally: Argo CD's CRDs
(copied from the argo-cd module), the `argocd` namespace, an empty `argocd-cm` and an `argocd-secret`, and the
`default` AppProject (argocd-server creates it in a real install; no argocd-server runs here: no UI, no API,
no SSO). The controller reaches the cluster it runs in through its kubeconfig (ARGOCD_FAKE_IN_CLUSTER, as
Argo CD's own e2e does), so `https://kubernetes.default.svc` destinations work.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.devcluster.controlplane import free_port
from hack.devcluster.podrunner import wait_for

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "build-argocd.sh"
NAMESPACE = "argocd"
VERSION = "2.14.21"  # hack/build-argocd.sh builds this one (ARGOCD_VERSION)
PART_OF = {"app.kubernetes.io/part-of": "argocd"}


def build_binaries() -> Path:
    """The cached Argo CD folder (argocd + component symlinks + crds/); builds it once (about 5 minutes)."""
    out = subprocess.run(
        ["bash", str(BUILD)],
        env={**os.environ, "ARGOCD_VERSION": VERSION},
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class ArgoCD:
    workdir: Path
    bin_dir: Path
    kubeconfig: Path
    kubectl_bin: Path
    tools_dir: Path  # helm (the repo server renders charts with it) and kubectl
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            check=False,
            capture_output=True,
            text=True,
            input=input,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out

    def version(self) -> str:
        """`argocd: v2.14.21+unknown` (the CLI of the same binary)."""
        out = subprocess.run(
            [str(self.bin_dir / "argocd"), "version", "--client", "--short"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ArgoCD:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        self._install()
        redis_port, repo_port = free_port(), free_port()
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        redis = f"127.0.0.1:{redis_port}"
        self._spawn(
            "argocd-repo-server",
            [
                str(self.bin_dir / "argocd-repo-server"),
                f"--port={repo_port}",
                f"--metrics-port={free_port()}",
                "--disable-tls",
                f"--redis={redis}",
            ],
        )
        self._wait_port(repo_port, timeout, "argocd-repo-server")
        self._spawn(
            "argocd-application-controller",
            [
                str(self.bin_dir / "argocd-application-controller"),
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={NAMESPACE}",
                f"--repo-server=127.0.0.1:{repo_port}",
                "--repo-server-plaintext",
                f"--redis={redis}",
                f"--metrics-port={free_port()}",
                # Refresh from git every 10 s (default 180 s) and self-heal without delay: tests wait less.
                "--app-resync=10",
                "--self-heal-timeout-seconds=1",
                "--status-processors=4",
                "--operation-processors=4",
            ],
        )
        return self

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_GPG_ENABLED": "false",
            "ARGOCD_CONTROLLER_REPLICAS": "1",
            "PATH": f"{self.tools_dir}:{os.environ.get('PATH', '')}",
            "TMPDIR": str(self.workdir / "tmp"),
            "HOME": str(self.workdir),
        }

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env(),
            cwd=self.workdir,
            start_new_session=True,
        )

    def _wait_port(self, port: int, timeout: float, name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} did not listen on {port}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        for name in ["argocd-application-controller", "argocd-repo-server", "redis"]:
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    # -- what an install creates -------------------------------------------------------------------
    def _install(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(self.bin_dir / "crds"))
        for crd in ("applications.argoproj.io", "appprojects.argoproj.io", "applicationsets.argoproj.io"):
            wait_for(
                lambda crd=crd: self.kubectl(
                    "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}"
                ),
                60,
                what=f"CRD {crd}",
            )
        objects: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": NAMESPACE, "labels": PART_OF},
                "data": {},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": PART_OF},
                "stringData": {"server.secretkey": os.urandom(16).hex()},
            },
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AppProject",
                "metadata": {"name": "default", "namespace": NAMESPACE},
                "spec": {
                    "sourceRepos": ["*"],
                    "destinations": [{"server": "*", "namespace": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                },
            },
        ]
        self.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        )

    # -- reading what Argo CD reports --------------------------------------------------------------
    def application(self, name: str) -> dict[str, Any] | None:
        out = self.kubectl("-n", NAMESPACE, "get", "application", name, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None
