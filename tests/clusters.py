"""The session's control plane as the tests see it (`Cluster`), and the repository's paths; the fixtures
that start it are in conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config

from hack.devcluster import controlplane, levels_rbac

REPO = Path(__file__).resolve().parents[1]


CRD_DIR = REPO / "crds"  # TradingSystem, TradingAccount, TradingHalt


USE_EXISTING = os.environ.get("QUANTZOO_USE_EXISTING_CLUSTER") == "1"


@dataclass
class Cluster:
    """What a test needs to talk to the control plane as admin (and to inject faults when it is ours)."""

    kubeconfig: Path
    bin_dir: Path
    plane: controlplane.ControlPlane | None  # None when the cluster is not ours

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        kubectl = self.bin_dir / "kubectl" if (self.bin_dir / "kubectl").exists() else Path("kubectl")
        return subprocess.run(
            [str(kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
        )

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def env(self) -> dict[str, str]:
        """Environment for a child process (operator, engine, safety) that talks to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def install_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    names = [f"crd/{load_yaml(f)['metadata']['name']}" for f in sorted(CRD_DIR.glob("*.yaml"))]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    # Engines (as their ServiceAccounts) read the TradingHalts: the binding a chart install has.
    helm = (
        cluster.bin_dir / "helm"
        if (cluster.bin_dir / "helm").exists()
        else Path(shutil.which("helm") or "helm")
    )
    levels_rbac.install(cluster.kubectl, helm)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())
