"""A real single-node Kubernetes cluster on this machine, assembled the way kubernetes'
hack/local-up-cluster.sh does it: the control plane of controlplane.py (without kwok) plus containerd + runc,
a kubelet (cgroupfs driver, CNI bridge + host-local + portmap + loopback), kube-proxy (iptables mode),
CoreDNS as a pod (cluster.local only, no upstream forwarder) and kube-router's NetworkPolicy controller
(see hack/build-node.sh for why not kube-network-policies).

Nothing leaves the machine: a firewall chain drops forwarded pod traffic to anything but the pod network,
the Service network and this host. Everything it sets up (processes, network namespaces, iptables chains,
mounts, interfaces, cgroups, sysctls) is torn down by `stop()`, also after a failed start, and by
`cleanup_host()` after a run that was killed outright.

Needs root. Only one such cluster per machine: callers hold `flock /work/.heavy.lock` (or the like).

    python -m hack.devcluster.node up [--dir .cluster-node]    # prints `export KUBECONFIG=...`
    python -m hack.devcluster.node down [--dir .cluster-node]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hack.devcluster import controlplane

REPO = controlplane.REPO
NODE_NAME = controlplane.REAL_NODE_NAME
# On an interface of its own (a bridge without ports: this kernel may lack the dummy driver); the API server
# and the kubelet listen here, pods reach it through their gateway.
NODE_IP = "10.245.0.1"
NODE_IFACE = "qz-node0"
BRIDGE = "qz-br0"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.0.0.0/16"  # controlplane.py's --service-cluster-ip-range
DNS_IP = "10.0.0.10"
FW_CHAIN = "QUANTZOO-EGRESS"
CNI_BIN = Path("/usr/lib/cni")
# iptables chains the node's parts create (kube-proxy, kubelet, CNI portmap, kube-router, ours).
CHAIN_PREFIXES = ("KUBE-", "CNI-", "QUANTZOO-")
SYSCTLS = {
    "net/ipv4/ip_forward": "1",  # pod -> Service -> pod is routed through this host
    "net/bridge/bridge-nf-call-iptables": "1",  # bridged pod traffic meets kube-proxy and the policies
}
READY_JSONPATH = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
STALE_STATE = Path("/run/quantzoo-node.json")  # survives a killed run: what cleanup_host must undo


@dataclass(frozen=True)
class Image:
    name: str
    ref: str
    archive: Path


def build_images() -> dict[str, Image]:
    """Build (or find cached) the QuantZoo, pause and CoreDNS images; see hack/build-image.sh."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-image.sh"), "all"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    images = {}
    for line in out.splitlines():
        name, ref, archive = line.split()
        images[name] = Image(name, ref, Path(archive))
    return images


def node_binaries() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-node.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, input=input)


def missing_prerequisites() -> str:
    """Why a real node cannot start on this machine ("" when it can)."""
    if os.geteuid() != 0:
        return "a real node needs root"
    for tool in ("containerd", "runc", "ctr", "iptables", "ipset", "mmdebstrap", "buildah", "curl"):
        if not shutil.which(tool):
            return f"{tool} not installed (make node-deps)"
    if not (CNI_BIN / "bridge").exists():
        return "containernetworking-plugins not installed (make node-deps)"
    return ""


# -- host network: interfaces, sysctls, firewall ----------------------------------------------------
def prepare_host_network(saved_sysctls: dict[str, str]) -> None:
    """The node's address (the API server must listen on it before the node starts) and the egress fence."""
    if run("ip", "link", "show", NODE_IFACE, check=False).returncode != 0:
        run("ip", "link", "add", NODE_IFACE, "type", "bridge")
    run("ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_IFACE)
    run("ip", "link", "set", NODE_IFACE, "up")
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        saved_sysctls.setdefault(key, path.read_text().strip())
        path.write_text(value)
    # Forwarded pod traffic may go to pods and Services only (traffic to this host is INPUT, not FORWARD;
    # a Service address is DNATed to a pod address before FORWARD sees it).
    run("iptables", "-w", "-N", FW_CHAIN, check=False)
    run("iptables", "-w", "-F", FW_CHAIN)
    run("iptables", "-w", "-A", FW_CHAIN, "-d", CLUSTER_CIDR, "-j", "RETURN")
    run("iptables", "-w", "-A", FW_CHAIN, "-d", SERVICE_CIDR, "-j", "RETURN")
    run("iptables", "-w", "-A", FW_CHAIN, "-j", "DROP")
    if run("iptables", "-w", "-C", "FORWARD", "-s", CLUSTER_CIDR, "-j", FW_CHAIN, check=False).returncode:
        run("iptables", "-w", "-I", "FORWARD", "1", "-s", CLUSTER_CIDR, "-j", FW_CHAIN)


def _iptables_cleanup() -> None:
    """Remove every rule that jumps to, and every chain named with, one of CHAIN_PREFIXES (IPv4 and IPv6:
    the kubelet and kube-proxy create their canary chains in both)."""
    for iptables in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            dump = run(f"{iptables}-save", "-t", table, check=False).stdout
            chains = re.findall(r"^:(\S+)", dump, re.M)
            ours = [c for c in chains if c.startswith(CHAIN_PREFIXES)]
            for line in dump.splitlines():
                m = re.match(r"^-A (\S+) (.*)$", line)
                jumps_to_ours = re.search(r"-j (KUBE-|CNI-|QUANTZOO-)", line)
                if m and jumps_to_ours and not m.group(1).startswith(CHAIN_PREFIXES):
                    rule = shlex.split(m.group(2))
                    run(iptables, "-w", "-t", table, "-D", m.group(1), *rule, check=False)
            for flag in ("-F", "-X"):
                for chain in ours:
                    run(iptables, "-w", "-t", table, flag, chain, check=False)


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    prefix = str(root.resolve()) + "/"
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run("umount", "-l", mnt, check=False)


def _kill_pod_processes() -> None:
    """Containers whose shim is gone (a killed run, `node down`) live on under init: find them by cgroup."""
    pids = set()
    for procs in Path("/sys/fs/cgroup").glob("*/kubepods/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        time.sleep(0.5)


def _remove_cgroups() -> None:
    """The kubelet's kubepods hierarchy, and k8s.io (where `ctr run` puts containers), in every cgroup v1
    controller; empty once the pods are gone."""
    for top in [*Path("/sys/fs/cgroup").glob("*/kubepods*"), *Path("/sys/fs/cgroup").glob("*/k8s.io")]:
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _delete_netns() -> None:
    # The CRI names pod network namespaces cni-<uuid>; only one such cluster runs on the machine.
    for name in run("ip", "netns", "list", check=False).stdout.split("\n"):
        ns = name.split(" ", 1)[0]
        if ns.startswith("cni-"):
            run("ip", "netns", "delete", ns, check=False)


def cleanup_host(workdir: Path | None = None, saved_sysctls: dict[str, str] | None = None) -> None:
    """Undo everything a node run leaves on the host; safe to call twice, and after a killed run."""
    kill_stale_control_planes()
    stale: dict = {}
    if STALE_STATE.exists():
        with contextlib.suppress(Exception):
            stale = json.loads(STALE_STATE.read_text())
    for pid in stale.get("pids", []):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    # containerd-shim processes of our containerd (their command line names our state folder).
    wd = workdir or (Path(stale["workdir"]) if stale.get("workdir") else None)
    if wd is not None:
        for pid, argv in processes():
            command = " ".join(argv)
            if "containerd-shim" in command and str(wd) in command:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _kill_pod_processes()
        _unmount_under(wd)
        # The kubelet's symlinks to container logs (a fixed host path) that point into our folder.
        for link in Path("/var/log/containers").glob("*.log"):
            if link.is_symlink() and os.readlink(link).startswith(str(wd)):
                link.unlink(missing_ok=True)
    _delete_netns()
    _iptables_cleanup()
    _destroy_kube_router_sets()
    for iface in (BRIDGE, NODE_IFACE):
        run("ip", "link", "delete", iface, check=False)
    for key, value in {**stale.get("sysctls", {}), **(saved_sysctls or {})}.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / key).write_text(value)
    _kill_pod_processes()
    _remove_cgroups()
    STALE_STATE.unlink(missing_ok=True)


def kill_stale_control_planes() -> None:
    """A control plane that a killed run left holding the node's address, found by its API server's
    `--bind-address`, stopped with the rest of its run (`controlplane.kill_stale` on the folder of its
    `--cert-dir`). A demo SIGKILLed by its test's timeout left one, and every later start failed on it."""
    for pid, argv in processes():
        if not argv or not argv[0].endswith("kube-apiserver") or f"--bind-address={NODE_IP}" not in argv:
            continue
        for arg in argv:
            if arg.startswith("--cert-dir="):
                controlplane.kill_stale(Path(arg.removeprefix("--cert-dir=")).parent)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def proc_files(name: str) -> Iterator[tuple[int, bytes]]:
    """(pid, /proc/<pid>/<name>) for every process still there when its file is read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / name).read_bytes()
        except OSError:
            continue


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process, from /proc: whole command lines (`ps` cuts them at 80 columns when it
    finds no terminal width, as under pytest, and a state folder's path fell past the cut)."""
    for pid, raw in proc_files("cmdline"):
        if raw:  # kernel threads have none
            yield pid, [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]


def _destroy_kube_router_sets() -> None:
    if not shutil.which("ipset"):
        return
    for name in run("ipset", "list", "-n", check=False).stdout.split():
        if name.startswith(("KUBE-", "kube-router")):
            run("ipset", "destroy", name, check=False)


# -- the node -------------------------------------------------------------------------------------
@dataclass
class Node:
    plane: controlplane.ControlPlane
    images: dict[str, Image]
    node_bin: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return self.plane.workdir / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def k8s_bin(self) -> Path:
        return self.plane.bin_dir

    @property
    def app_image(self) -> str:
        """The QuantZoo image as the kubelet knows it."""
        return self.images["quantzoo"].ref

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        sock = str(self.containerd_socket)
        return run("ctr", "--address", sock, "--namespace", "k8s.io", *args, check=check)

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> Node:
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._write_stale_state()
        self._start_containerd()
        self._import_images()
        self.timings["containerd+images"] = time.monotonic() - t0
        self._write_cni_config()
        self._start_kubelet()
        self._start_kube_proxy()
        # kube-router looks its node up once, at start: it must be registered by then.
        self._wait(f"node {NODE_NAME} registered", lambda: self._node_condition() is not None, timeout)
        self._start_kube_router()
        self._wait(f"node {NODE_NAME} Ready", lambda: self._node_condition() == "True", timeout)
        self.timings["node ready"] = time.monotonic() - t0
        self._deploy_coredns(timeout)
        self.timings["dns ready"] = time.monotonic() - t0
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C aimed at the caller does not kill it before teardown
            env=env,
        )
        self.procs[name] = proc
        self._write_stale_state()
        return proc

    def _write_stale_state(self) -> None:
        STALE_STATE.write_text(
            json.dumps(
                {
                    "workdir": str(self.workdir),
                    "pids": [p.pid for p in self.procs.values()],
                    "sysctls": self.saved_sysctls,
                }
            )
        )

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = self.workdir / "logs" / f"{name}.log"
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
            if check():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{what} not reached after {timeout}s; logs in {self.workdir}/logs")

    def _start_containerd(self) -> None:
        d = self.workdir / "containerd"
        d.mkdir(exist_ok=True)
        config = f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.images["pause"].ref}"
  disable_apparmor = true
  # This machine may refuse a lower oom_score_adj than ours (no CAP_SYS_RESOURCE): clamp instead of failing.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"""
        (d / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(d / "config.toml"), "--log-level", "warn"])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, 30)

    def _import_images(self) -> None:
        for image in self.images.values():
            # Every ref is under localhost/ (hack/build-image.sh): ctr keeps the name the kubelet asks for.
            self.ctr("images", "import", str(image.archive))

    def _write_cni_config(self) -> None:
        netd = self.workdir / "cni" / "net.d"
        netd.mkdir(parents=True, exist_ok=True)
        conf = {
            "cniVersion": "1.0.0",
            "name": "quantzoo",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # pods talk to pods, Services and this host only
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (netd / "10-quantzoo.conflist").write_text(json.dumps(conf, indent=2))

    def _start_kubelet(self) -> None:
        d = self.workdir / "kubelet"
        d.mkdir(exist_ok=True)
        (d / "resolv.conf").write_text("")  # pods get cluster DNS only; nothing of this host's resolver
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": controlplane.free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": controlplane.free_port(),
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": str(d / "resolv.conf"),
            "podLogsDir": str(self.workdir / "pod-logs"),
            "failSwapOn": False,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.client_ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            # A shared build machine: never evict a pod for disk or memory pressure, never GC our images
            # (they cannot be pulled again).
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "registerNode": True,
        }
        (d / "config.json").write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(self.k8s_bin / "kubelet"),
                f"--config={d / 'config.json'}",
                f"--kubeconfig={self.plane.workdir / 'kubelet.kubeconfig'}",
                f"--root-dir={d / 'root'}",
                f"--cert-dir={d / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        self._spawn(
            "kube-proxy",
            [
                str(self.k8s_bin / "kube-proxy"),
                f"--kubeconfig={self.plane.workdir / 'kube-proxy.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={CLUSTER_CIDR}",
                f"--healthz-bind-address=127.0.0.1:{controlplane.free_port()}",
                f"--metrics-bind-address=127.0.0.1:{controlplane.free_port()}",
                # Leave this host's conntrack and localhost settings alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--iptables-localhost-nodeports=false",
                "--v=1",
            ],
        )

    def _start_kube_router(self) -> None:
        self._spawn(
            "kube-router",
            [
                str(self.node_bin / "kube-router"),
                f"--kubeconfig={self.plane.workdir / 'kube-router.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                "--enable-ipv6=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--health-port=0",
                "--metrics-port=0",
                "--v=1",
            ],
        )

    def _node_condition(self) -> str | None:
        """The node's Ready condition ("True"/"False"/"Unknown"), None while it is not registered."""
        res = self.plane.kubectl("get", "node", NODE_NAME, "-o", READY_JSONPATH, check=False)
        return res.stdout.strip() if res.returncode == 0 else None

    def _deploy_coredns(self, timeout: float) -> None:
        manifest = (Path(__file__).parent / "manifests" / "coredns.yaml").read_text()
        manifest = manifest.replace("${IMAGE}", self.images["coredns"].ref).replace("${DNS_IP}", DNS_IP)
        self.plane.kubectl("apply", "-f", "-", input=manifest)
        res = self.plane.kubectl(
            *("-n", "kube-system", "rollout", "status", "deployment/coredns"),
            f"--timeout={int(timeout)}s",
            check=False,
        )
        if res.returncode:
            raise TimeoutError(f"CoreDNS not ready: {res.stderr.strip()}; logs in {self.workdir}/logs")

    # -- stop ----------------------------------------------------------------------------------
    def _delete_pods(self, timeout: float = 20.0) -> None:
        """Let the kubelet tear pods down (CNI DEL frees addresses and veths) while it still runs."""
        if "kubelet" not in self.procs or self.procs["kubelet"].poll() is not None:
            return
        # Controllers first (they would only recreate the pods), then the pods.
        workloads = "deployments,statefulsets,daemonsets,replicasets,jobs"
        self.plane.kubectl("delete", workloads, "--all", "-A", "--wait=false", check=False)
        self.plane.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=false", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.ctr("containers", "list", "-q", check=False).stdout.split()
            if not left:
                return
            time.sleep(1)

    def _terminate(self, name: str, grace: float = 10.0) -> None:
        controlplane.terminate_group(self.procs.pop(name, None), grace)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._delete_pods()
        for name in ["kube-router", "kube-proxy", "kubelet"]:
            self._terminate(name)
        # Whatever the kubelet left: stop and remove every task and container of our containerd.
        if "containerd" in self.procs:
            for cid in self.ctr("tasks", "list", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
            time.sleep(0.5)
            for cid in self.ctr("containers", "list", "-q", check=False).stdout.split():
                self.ctr("tasks", "delete", "-f", cid, check=False)
                self.ctr("containers", "delete", cid, check=False)
        self._terminate("containerd")
        run(str(self.k8s_bin / "kube-proxy"), "--cleanup", check=False)
        run(str(self.node_bin / "kube-router"), "--cleanup-config", check=False)
        cleanup_host(self.workdir, self.saved_sysctls)


# -- a whole cluster: control plane + node ----------------------------------------------------------
@dataclass
class RealCluster:
    plane: controlplane.ControlPlane
    node: Node
    timings: dict[str, float]

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def stop(self) -> None:
        try:
            self.node.stop()
        finally:
            self.plane.stop()
            cleanup_host(self.node.workdir, self.node.saved_sysctls)


def start_cluster(workdir: Path) -> RealCluster:
    """Build what is missing, start the control plane and the node; on failure, tear down what started."""
    t0 = time.monotonic()
    bin_dir = controlplane.build_binaries()
    node_bin = node_binaries()
    images = build_images()
    timings = {"build or cache check": time.monotonic() - t0}
    cleanup_host()  # a run killed outright before this one
    controlplane.kill_stale(workdir)
    saved: dict[str, str] = {}
    plane = controlplane.ControlPlane(workdir=workdir, bin_dir=bin_dir, node_ip=NODE_IP)
    node = Node(plane=plane, images=images, node_bin=node_bin, saved_sysctls=saved)
    t1 = time.monotonic()
    try:
        prepare_host_network(saved)
        plane.start()
        timings["control plane"] = time.monotonic() - t1
        node.start()
    except BaseException:
        RealCluster(plane, node, timings).stop()
        raise
    timings.update({f"node: {k}": v for k, v in node.timings.items()})
    timings["cluster up"] = time.monotonic() - t1
    return RealCluster(plane=plane, node=node, timings=timings)


@contextlib.contextmanager
def real_cluster(workdir: Path) -> Iterator[RealCluster]:
    """start_cluster, torn down however the block ends (SIGTERM becomes an exception, so teardown runs then
    too; a Ctrl-C is a KeyboardInterrupt already)."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if main_thread:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        cluster = start_cluster(workdir)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", default=str(REPO / ".cluster-node"), help="state folder")
    args = parser.parse_args(argv)
    wd = Path(args.dir).resolve()
    if args.action == "down":
        controlplane.kill_stale(wd)
        cleanup_host(wd / "node")
        print(f"real cluster in {wd} stopped", file=sys.stderr)
        return 0
    cluster = start_cluster(wd)
    # Detach: the processes outlive this command until `down`, which finds them through the state files.
    cluster.plane.procs.clear()
    cluster.node.procs.clear()
    print(f"real single-node cluster up in {cluster.timings['cluster up']:.0f} s", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
