"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (simulated nodes, so Deployments and StatefulSets get Pods that go Running and
Ready, and ownerReference garbage collection is real).

With `node_ip` set, the control plane is made for a real node (hack/devcluster/node.py) instead: no kwok,
the API server listens on the node's address (pods reach it there through the `kubernetes` Service), the
Node authorizer is on and the API server has a client certificate for the kubelet's API.

Used by the pytest session fixture (tests/conftest.py), by `make cluster-up` / `make cluster-down` and by
the demo. The binaries come from hack/build-control-plane.sh, cached outside the repository by version.

    python -m hack.devcluster.controlplane up [--dir .cluster]    # prints `export KUBECONFIG=...`
    python -m hack.devcluster.controlplane down [--dir .cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-control-plane.sh"

# Static bearer tokens (only ever on loopback, for a throwaway cluster). The admin is in system:masters;
# the control-plane components use their own identities so RBAC is the real thing for everyone else.
ADMIN_TOKEN = "quantzoo-admin-token"
_TOKENS = {
    "admin": (ADMIN_TOKEN, "system:masters"),
    "system:kube-controller-manager": ("quantzoo-kcm-token", ""),
    "system:kube-scheduler": ("quantzoo-scheduler-token", ""),
    "kwok": ("quantzoo-kwok-token", "system:masters"),
    # The real node's components (node.py): the kubelet as its node (Node authorizer), kube-proxy under the
    # user the bootstrap policy binds to system:node-proxier, the NetworkPolicy enforcer as an admin.
    "system:node:quantzoo-node": ("quantzoo-kubelet-token", "system:nodes"),
    "system:kube-proxy": ("quantzoo-kube-proxy-token", ""),
    "kube-router": ("quantzoo-kube-router-token", "system:masters"),
}

NODE_NAME = "kwok-node-0"
REAL_NODE_NAME = "quantzoo-node"


def terminate_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM a component's process group, SIGKILL it after `grace` seconds (the node reuses this)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def build_binaries() -> Path:
    """Build (or find cached) binaries; returns the folder that holds them."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    return Path(out.splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    apiserver_port: int = 0
    etcd_port: int = 0
    etcd_peer_port: int = 0
    node_ip: str | None = None
    """Set for a real node: the API server listens and advertises here, and kwok does not run."""

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def address(self) -> str:
        return self.node_ip or "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    # -- start -------------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._write_credentials()
        self._start_etcd()
        self._start_apiserver()
        self._wait_ready(timeout)
        self._write_kubeconfigs()
        self._start_component(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.workdir / 'kcm.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={self.workdir / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-service-lb-controller,-route,-cloud-node-lifecycle",
                # kwok posts node status only every ~55 s and renews no node Lease, longer than the 50 s
                # default grace: the node-lifecycle controller would mark every pod NotReady once a minute.
                "--node-monitor-grace-period=1h",
                "--concurrent-deployment-syncs=10",
                "--concurrent-statefulset-syncs=10",
                "--concurrent-gc-syncs=20",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        self._start_component(
            "kube-scheduler",
            [
                f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        if self.node_ip:
            self._write_state()
            return self
        self._start_component(
            "kwok",
            [
                f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
                f"--config={self.workdir / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-label-selector=type=kwok",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.244.0.1",
                f"--node-port={free_port()}",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        self._create_node()
        self._write_state()
        return self

    def _write_credentials(self) -> None:
        rows = [f'{tok},{user},{user},"{groups}"' for user, (tok, groups) in _TOKENS.items()]
        (self.workdir / "tokens.csv").write_text("\n".join(rows) + "\n")
        key = self.workdir / "sa.key"
        if not key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
            subprocess.run(
                ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.workdir / "sa.pub")],
                check=True,
                capture_output=True,
            )
        # An empty kwok config: kwok falls back to its built-in node and pod stages.
        (self.workdir / "kwok.yaml").write_text("")
        if self.node_ip:
            self._write_kubelet_client_pki()

    def _write_kubelet_client_pki(self) -> None:
        """A CA the kubelet trusts for client certificates, and the API server's client certificate for the
        kubelet API (logs, exec, port-forward), as local-up-cluster.sh does."""
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        if (pki / "kubelet-client.crt").exists():
            return

        def openssl(args: str) -> None:
            subprocess.run(["openssl", *args.split()], check=True, capture_output=True, cwd=pki)

        openssl("req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=quantzoo-client-ca"
                " -keyout client-ca.key -out client-ca.crt")  # fmt: skip
        openssl("req -newkey rsa:2048 -nodes -subj /O=system:masters/CN=kube-apiserver-kubelet-client"
                " -keyout kubelet-client.key -out kubelet-client.csr")  # fmt: skip
        openssl("x509 -req -days 7 -in kubelet-client.csr -CA client-ca.crt -CAkey client-ca.key"
                " -CAcreateserial -out kubelet-client.crt")  # fmt: skip

    @property
    def client_ca_file(self) -> Path:
        return self.workdir / "pki" / "client-ca.crt"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        # A session of its own: a Ctrl-C aimed at pytest does not kill the cluster before teardown runs.
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def _start_etcd(self) -> None:
        # A restart (start_etcd) reuses the ports: the API server keeps its --etcd-servers.
        self.etcd_port = self.etcd_port or free_port()
        self.etcd_peer_port = peer = self.etcd_peer_port or free_port()
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self) -> None:
        if not self.apiserver_port:
            # A real node's pods reach it through the `kubernetes` Service, and NetworkPolicies (the chart's
            # networkPolicy.apiServerPorts) see the port behind it: the conventional 6443, as on a real
            # cluster. On loopback, any free port.
            self.apiserver_port = 6443 if self.node_ip else free_port()
        node_args = []
        if self.node_ip:
            pki = self.workdir / "pki"
            node_args = [
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP",  # the node's name is in no DNS
            ]
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--secure-port={self.apiserver_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                "--service-cluster-ip-range=10.0.0.0/16",  # 2 Services per TradingSystem: room for thousands
                "--allow-privileged=true",
                "--authorization-mode=Node,RBAC" if self.node_ip else "--authorization-mode=RBAC",
                *node_args,
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.workdir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
                "--watch-cache=true",
                "--v=0",
            ],
        )

    def _start_component(self, name: str, args: list[str]) -> None:
        self._spawn(name, [str(self.bin_dir / name), *args])

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the serving cert appears only once the server is up
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see {self.workdir}/logs/{name}.log"
                    )
            req = urllib.request.Request(  # noqa: S310 - a fixed https URL on loopback
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except Exception as exc:
                last = str(exc)
            time.sleep(0.25)
        raise TimeoutError(f"kube-apiserver not ready after {timeout}s: {last}")

    def _kubeconfig_for(self, user: str, token: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "quantzoo-local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "quantzoo-local", "context": {"cluster": "quantzoo-local", "user": user}}],
            "current-context": "quantzoo-local",
        }

    def _write_kubeconfigs(self) -> None:
        files = {
            "kubeconfig": "admin",
            "kcm.kubeconfig": "system:kube-controller-manager",
            "scheduler.kubeconfig": "system:kube-scheduler",
            "kwok.kubeconfig": "kwok",
            "kubelet.kubeconfig": "system:node:quantzoo-node",
            "kube-proxy.kubeconfig": "system:kube-proxy",
            "kube-router.kubeconfig": "kube-router",
        }
        for fname, user in files.items():
            path = self.workdir / fname
            path.write_text(json.dumps(self._kubeconfig_for(user, _TOKENS[user][0]), indent=2))
            path.chmod(0o600)

    def kubeconfig_for_token(self, token: str, path: Path, user: str = "sa") -> Path:
        """A kubeconfig that acts with `token` (e.g. a ServiceAccount token from the TokenRequest API)."""
        path.write_text(json.dumps(self._kubeconfig_for(user, token), indent=2))
        path.chmod(0o600)
        return path

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
        )

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "labels": {"type": "kwok", "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            },
            "status": {
                "allocatable": {"cpu": "256", "memory": "1Ti", "pods": "2000"},
                "capacity": {"cpu": "256", "memory": "1Ti", "pods": "2000"},
            },
        }
        deadline = time.monotonic() + 60
        while True:
            res = self.kubectl("apply", "-f", "-", input=json.dumps(node), check=False)
            if res.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create the kwok node: {res.stderr.strip()}")
            time.sleep(0.5)

    # -- faults the tests inject -------------------------------------------------------------------
    def stop_apiserver(self) -> None:
        self._terminate("kube-apiserver")

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Restart kube-apiserver on the same port (clients keep their kubeconfig)."""
        self._start_apiserver()
        self._wait_ready(timeout)
        self._write_state()

    def stop_etcd(self) -> None:
        self._terminate("etcd")

    def start_etcd(self, timeout: float = 60.0) -> None:
        """Restart etcd on the same ports with the same data dir; returns once the API server is ready."""
        self._start_etcd()
        self._wait_ready(timeout)
        self._write_state()

    # -- stop --------------------------------------------------------------------------------------
    def _terminate(self, name: str, grace: float = 10.0) -> None:
        terminate_group(self.procs.pop(name, None), grace)

    def stop(self) -> None:
        # Reverse order: clients of the API server first, etcd last.
        for name in ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]:
            self._terminate(name)
        state = self.workdir / "state.json"
        state.unlink(missing_ok=True)

    def _write_state(self) -> None:
        (self.workdir / "state.json").write_text(
            json.dumps(
                {
                    "pids": {n: p.pid for n, p in self.procs.items()},
                    "server": self.server,
                    "kubeconfig": str(self.kubeconfig),
                }
            )
        )

    def versions(self) -> dict[str, str]:
        def first_line(*argv: str) -> str:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]

        return {
            "kube-apiserver": first_line(str(self.bin_dir / "kube-apiserver"), "--version"),
            "etcd": first_line(str(self.bin_dir / "etcd"), "--version"),
            "kwok": first_line(str(self.bin_dir / "kwok"), "--version"),
        }


def kill_stale(workdir: Path) -> None:
    """Stop a control plane a previous, killed run left behind in `workdir`."""
    state = workdir / "state.json"
    if not state.exists():
        return
    with contextlib.suppress(Exception):
        pids = json.loads(state.read_text())["pids"]
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    state.unlink(missing_ok=True)


def start(workdir: Path | None = None, node_ip: str | None = None) -> ControlPlane:
    bin_dir = build_binaries()
    wd = workdir or Path(tempfile.mkdtemp(prefix="quantzoo-cp-"))
    kill_stale(wd)
    cp = ControlPlane(workdir=wd, bin_dir=bin_dir, node_ip=node_ip)
    try:
        return cp.start()
    except BaseException:
        cp.stop()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="controlplane", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", default=str(REPO / ".cluster"), help="state folder (default .cluster/)")
    args = parser.parse_args(argv)
    wd = Path(args.dir).resolve()
    if args.action == "down":
        kill_stale(wd)
        print(f"control plane in {wd} stopped", file=sys.stderr)
        return 0
    if (wd / "state.json").exists():
        kill_stale(wd)
    cp = start(wd)
    # Detach: the processes live in their own sessions and outlive this command until `down`.
    cp.procs.clear()
    v = cp.versions()
    print(f"control plane up: {v['kube-apiserver']}, {v['etcd']}, kwok {v['kwok']}", file=sys.stderr)
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
