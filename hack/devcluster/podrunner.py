"""Run a pod's container as a real local process: the stand-in for a kubelet on kwok's simulated nodes.

kwok makes Pods go Running without running anything. For end-to-end tests, the benchmark and the demo we
run the container's command on this machine exactly as the operator rendered it:
- env: literal values, `secretKeyRef` / `configMapKeyRef` read from the API server, `fieldRef` from the pod;
- volumes: ConfigMap and Secret volumes are materialised into a temporary folder, emptyDirs are created,
  and env values that point under a mount path are rewritten to the local folder; like the kubelet, the
  runner keeps ConfigMap and Secret volumes in sync while the process runs (a short poll, then the
  kubelet's atomic `..data` symlink swap), so a rotated Secret reaches the running process;
- leak checks: every Secret value it materialises and the process's work folder are registered with
  hack/devcluster/leaks.py, and the process's /metrics is captured before it is stopped;
- identity: instead of the in-cluster token, the process gets a kubeconfig holding a token for the pod's
  own ServiceAccount (TokenRequest API), so the Roles the operator wrote are what it runs with;
- network: the container port is mapped to a free loopback port (`<PREFIX>_PORT` env), in-cluster Service
  URLs in env are rewritten to the local processes that stand in for their pods, and the pod is annotated
  with `trading.quantzoo.io/admin-endpoint` so the operator pushes the kill switch to this process.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from kubernetes import client
from quantzoo_api.killswitch import ADMIN_ENDPOINT_ANNOTATION

from hack.devcluster.controlplane import ControlPlane
from hack.devcluster.leaks import REGISTRY as LEAKS

# The console scripts in the image; here they run from the project's virtualenv.
_MODULES = {
    "quantzoo-engine": "quantzoo_engine",
    "quantzoo-safety": "quantzoo_safety",
    "quantzoo-operator": "quantzoo_operator",
}
RESYNC_SECONDS = float(os.environ.get("QUANTZOO_PODRUNNER_RESYNC_SECONDS", "0.5"))
"""How often mounted ConfigMaps and Secrets are compared with the API server (the kubelet: about 1 min)."""
DATA_DIR = "..data"

_PORT_ENV = {
    "quantzoo-engine": "ENGINE_PORT",
    "quantzoo-safety": "SAFETY_PORT",
    "quantzoo-operator": "QUANTZOO_OPERATOR_PORT",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MountedVolume:
    """A ConfigMap or Secret volume written to `local`, kept in sync while its process runs."""

    kind: str  # "configmap" | "secret"
    namespace: str
    name: str
    items: dict[str, str] | None  # key -> path; None: every key under its own name
    local: Path
    written: dict[str, bytes] = field(repr=False, default_factory=dict)
    updates: int = 0
    """How many times a change was written after the first materialisation."""


def projected(data: dict[str, bytes], items: dict[str, str] | None) -> dict[str, bytes]:
    """The files of a volume: every key, or only the listed ones at their paths."""
    if items is None:
        return dict(data)
    return {path: data[key] for key, path in items.items() if key in data}


def write_atomically(root: Path, files: dict[str, bytes], mode: int = 0o644) -> None:
    """The kubelet's AtomicWriter layout: `..<timestamp>/` holds the files, `..data` points at it, and
    each top-level name is a symlink through `..data`. A change is one `rename()` of the `..data` link,
    so a reader sees the old set or the new set, never a mix."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S."), dir=root))
    for rel, content in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    data = root / DATA_DIR
    old = os.readlink(data) if data.is_symlink() else None
    tmp = root / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = root / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{top}")
    for entry in root.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()  # a key that is gone
    if old and old != stamp.name:
        import shutil

        shutil.rmtree(root / old, ignore_errors=True)


@dataclass
class LocalPod:
    """A running process standing in for one pod."""

    namespace: str
    pod: str
    url: str
    proc: subprocess.Popen
    workdir: Path
    log: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)
    volumes: list[MountedVolume] = field(repr=False, default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def secret(self, name: str) -> str:
        """A secret the process was given, as it holds it now: `NAME` from env, else the file `NAME_FILE`."""
        if name in self.env:
            return self.env[name]
        return Path(self.env[name + "_FILE"]).read_text().strip()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 35.0) -> int | None:
        if self.proc.poll() is None:
            LEAKS.scrape(self.url + "/metrics", f"metrics-{self.namespace}-{self.pod}", timeout=1)
            LEAKS.forget_url(self.url + "/metrics")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def wait_http(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.pod} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.pod} did not answer {path} within {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class PodRunner:
    def __init__(self, plane: ControlPlane | None, kubeconfig: Path, api: client.ApiClient) -> None:
        self.plane = plane
        self.kubeconfig = kubeconfig
        self.api = api
        self.core = client.CoreV1Api(api)
        # Service DNS name -> local URL of the process standing in for its pods.
        self.services: dict[str, str] = {}
        self.running: list[LocalPod] = []
        self._resync_thread: threading.Thread | None = None
        self._resync_stop = threading.Event()

    # -- identity ----------------------------------------------------------------------------------
    def service_account_kubeconfig(self, namespace: str, sa: str, path: Path) -> Path:
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=3600
            )
        )
        token = self.core.create_namespaced_service_account_token(sa, namespace, req).status.token
        if self.plane is not None:
            return self.plane.kubeconfig_for_token(
                token, path, user=f"system:serviceaccount:{namespace}:{sa}"
            )
        # An existing cluster: keep its server and CA, swap the credentials.

        cfg = yaml.safe_load(self.kubeconfig.read_text())
        for u in cfg.get("users", []):
            u["user"] = {"token": token}
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    # -- resolving the pod spec --------------------------------------------------------------------
    def _secret_value(self, namespace: str, name: str, key: str) -> str:
        data = self.core.read_namespaced_secret(name, namespace).data or {}
        value = base64.b64decode(data[key]).decode()
        LEAKS.secret(value, f"Secret {namespace}/{name}[{key}] (pod env)")
        return value

    def _configmap_value(self, namespace: str, name: str, key: str) -> str:
        return (self.core.read_namespaced_config_map(name, namespace).data or {})[key]

    def _volume_data(self, core: client.CoreV1Api, vol: MountedVolume) -> dict[str, bytes]:
        if vol.kind == "configmap":
            cm = core.read_namespaced_config_map(vol.name, vol.namespace, _request_timeout=5)
            data = {k: v.encode() for k, v in (cm.data or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
            return data
        secret = core.read_namespaced_secret(vol.name, vol.namespace, _request_timeout=5)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        for key, value in data.items():
            LEAKS.secret(value, f"Secret {vol.namespace}/{vol.name}[{key}] (pod volume)")
        return data

    def _sync_volume(self, core: client.CoreV1Api, vol: MountedVolume) -> bool:
        """Write the volume if its source changed; True when it did."""
        files = projected(self._volume_data(core, vol), vol.items)
        if files == vol.written:
            return False
        write_atomically(vol.local, files, 0o440 if vol.kind == "secret" else 0o644)
        if vol.written:
            vol.updates += 1
        vol.written = files
        return True

    def _materialise_volumes(
        self, pod: client.V1Pod, container: client.V1Container, root: Path
    ) -> tuple[dict[str, str], list[MountedVolume]]:
        """Write ConfigMap/Secret volumes to disk; returns ({mountPath: localPath}, the synced volumes)."""
        ns = pod.metadata.namespace
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts: dict[str, str] = {}
        synced: list[MountedVolume] = []
        for m in container.volume_mounts or []:
            vol = volumes.get(m.name)
            if vol is None or m.mount_path.startswith("/var/run/secrets/kubernetes.io"):
                continue
            local = root / "mounts" / m.name
            local.mkdir(parents=True, exist_ok=True)
            source = vol.config_map or vol.secret
            if source is not None:
                kind = "configmap" if vol.config_map is not None else "secret"
                name = vol.config_map.name if vol.config_map is not None else vol.secret.secret_name
                items = {i.key: i.path for i in source.items} if source.items else None
                mounted = MountedVolume(kind, ns, name, items, local)
                self._sync_volume(self.core, mounted)
                synced.append(mounted)
            mounts[m.mount_path.rstrip("/")] = str(local)
        return mounts, synced

    # -- the kubelet's volume sync -------------------------------------------------------------------
    def _ensure_resync(self) -> None:
        if self._resync_thread is not None and self._resync_thread.is_alive():
            return
        self._resync_stop.clear()
        self._resync_thread = threading.Thread(target=self._resync_loop, name="podrunner-resync", daemon=True)
        self._resync_thread.start()

    def _resync_loop(self) -> None:
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        core = client.CoreV1Api(api)
        try:
            while not self._resync_stop.wait(RESYNC_SECONDS):
                for local in list(self.running):
                    if not local.alive():
                        continue
                    for vol in local.volumes:
                        # The API server may be down on purpose; the kubelet keeps the last files too.
                        with contextlib.suppress(Exception):
                            self._sync_volume(core, vol)
        finally:
            api.close()

    def _process_env(
        self, pod: client.V1Pod, container: client.V1Container, mounts: dict[str, str]
    ) -> dict[str, str]:
        """This process's environment without QuantZoo's own variables, plus the pod's resolved env."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTZOO_", "ENGINE_", "SAFETY_"))}
        # Each of the pod's own values is rewritten exactly once (a mount at /tmp would match its own
        # local folder again); this process's environment is left as it is.
        env.update({k: self._rewrite(v, mounts) for k, v in self._env(pod, container, mounts).items()})
        return env

    def _rewrite(self, value: str, mounts: dict[str, str]) -> str:
        for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                return local + value[len(mount_path) :]
        for dns, url in self.services.items():
            value = re.sub(rf"https?://{re.escape(dns)}(:\d+)?", url, value)
        return value

    def _env(
        self, pod: client.V1Pod, container: client.V1Container, mounts: dict[str, str]
    ) -> dict[str, str]:
        ns = pod.metadata.namespace
        env: dict[str, str] = {}
        for e in container.env or []:
            if e.value is not None:
                env[e.name] = e.value
            elif e.value_from is not None:
                vf = e.value_from
                if vf.secret_key_ref is not None:
                    with contextlib.suppress(client.ApiException, KeyError):
                        env[e.name] = self._secret_value(ns, vf.secret_key_ref.name, vf.secret_key_ref.key)
                elif vf.config_map_key_ref is not None:
                    env[e.name] = self._configmap_value(
                        ns, vf.config_map_key_ref.name, vf.config_map_key_ref.key
                    )
                elif vf.field_ref is not None:
                    path = vf.field_ref.field_path
                    env[e.name] = {
                        "metadata.name": pod.metadata.name,
                        "metadata.namespace": ns,
                        "spec.serviceAccountName": pod.spec.service_account_name or "default",
                        "spec.nodeName": pod.spec.node_name or "",
                        "status.podIP": "127.0.0.1",
                    }.get(path, "")
        return env

    # -- running ----------------------------------------------------------------------------------
    def run(
        self,
        namespace: str,
        pod_name: str,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        annotate: bool = True,
    ) -> LocalPod:
        pod = self.core.read_namespaced_pod(pod_name, namespace)
        container = pod.spec.containers[0]
        command = (container.command or []) + (container.args or [])
        if not command or command[0] not in _MODULES:
            raise ValueError(f"pod {namespace}/{pod_name} runs {command!r}, not a QuantZoo entry point")
        root = Path(tempfile.mkdtemp(prefix=f"qz-{pod_name}-"))
        mounts, synced = self._materialise_volumes(pod, container, root)
        for m in container.volume_mounts or []:
            if m.mount_path.rstrip("/") not in mounts and not m.mount_path.startswith("/var/run/secrets"):
                local = root / "mounts" / m.name  # emptyDir and the like
                local.mkdir(parents=True, exist_ok=True)
                mounts[m.mount_path.rstrip("/")] = str(local)
        env = self._process_env(pod, container, mounts)
        sa = pod.spec.service_account_name or "default"
        env["KUBECONFIG"] = str(self.service_account_kubeconfig(namespace, sa, root / "kubeconfig"))
        port = port or free_port()
        env[_PORT_ENV.get(command[0], "PORT")] = str(port)
        env.update(extra_env or {})
        argv = [sys.executable, "-m", _MODULES[command[0]], *command[1:]]
        log = root / "process.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        local = LocalPod(namespace, pod_name, f"http://127.0.0.1:{port}", proc, root, log, env, synced)
        self.running.append(local)
        # Everything in the work folder is the process's output, except what holds a secret on purpose.
        LEAKS.tree(root, [root / "kubeconfig", *(v.local for v in synced if v.kind == "secret")])
        LEAKS.url(local.url + "/metrics", f"metrics-{namespace}-{pod_name}")
        if synced:
            self._ensure_resync()
        if annotate:
            self.annotate(local)
        return local

    def complete(self, namespace: str, pod_name: str, timeout: float = 120.0) -> tuple[int, str]:
        """Run a run-to-completion pod (a `python -c` hook such as the chart's `helm test` Pod) the way a
        kubelet would, then record its terminal phase and exit code in the pod's status, which is what
        `helm test` waits for. The in-cluster token is a ServiceAccount token file, as kubelet mounts it.
        Returns (exit code, output)."""
        pod = self.core.read_namespaced_pod(pod_name, namespace)
        container = pod.spec.containers[0]
        command = (container.command or []) + (container.args or [])
        if command[:1] not in (["python"], ["python3"]):
            raise ValueError(f"pod {namespace}/{pod_name} runs {command[:2]!r}, not a python hook")
        root = Path(tempfile.mkdtemp(prefix=f"qz-{pod_name}-"))
        mounts, _ = self._materialise_volumes(pod, container, root)  # run to completion: no resync
        sa_dir = root / "serviceaccount"
        sa_dir.mkdir()
        sa = pod.spec.service_account_name or "default"
        kubeconfig = self.service_account_kubeconfig(namespace, sa, root / "kubeconfig")
        cfg = yaml.safe_load(kubeconfig.read_text())
        (sa_dir / "token").write_text(cfg["users"][0]["user"]["token"])
        cluster = cfg["clusters"][0]["cluster"]
        (sa_dir / "ca.crt").write_text(Path(cluster["certificate-authority"]).read_text())
        env = self._process_env(pod, container, mounts)
        env.update(KUBERNETES_API_URL=cluster["server"], QUANTZOO_SERVICEACCOUNT_DIR=str(sa_dir))
        proc = subprocess.run(
            [sys.executable, *command[1:]],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        phase = "Succeeded" if proc.returncode == 0 else "Failed"
        terminated = {"exitCode": proc.returncode, "reason": "Completed" if phase == "Succeeded" else "Error"}
        self.core.patch_namespaced_pod_status(
            pod_name,
            namespace,
            {
                "status": {
                    "phase": phase,
                    "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                    "containerStatuses": [
                        {
                            "name": container.name,
                            "image": container.image,
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": {**terminated, "finishedAt": now}},
                        }
                    ],
                }
            },
        )
        return proc.returncode, proc.stdout + proc.stderr

    def annotate(self, local: LocalPod) -> None:
        self.core.patch_namespaced_pod(
            local.pod, local.namespace, {"metadata": {"annotations": {ADMIN_ENDPOINT_ANNOTATION: local.url}}}
        )

    def expose(self, namespace: str, service: str, local: LocalPod) -> None:
        """In-cluster URLs of `service` resolve to this local process from now on."""
        for dns in (
            f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}",
        ):
            self.services[dns] = local.url

    def stop_all(self) -> None:
        for local in reversed(self.running):
            local.stop(timeout=10)
        self.running.clear()
        self._resync_stop.set()
        if self._resync_thread is not None:
            self._resync_thread.join(timeout=10)
            self._resync_thread = None


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; that value is returned."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a transient API error is retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f": {last_exc}" if last_exc else "")
    )
