"""Every secret value the test session used, and everything the session produced, so one test at the end
(tests/zz_leaks) can grep the second for the first.

Secrets are registered
- by the cluster recorder, for every Secret that exists in the cluster during the session (what tests,
  fixtures and the operator create; ServiceAccount tokens and system namespaces excluded),
- by the pod runner, for every value it materialises from a Secret (env or volume),
- by a test, explicitly (`REGISTRY.secret(value, origin)`).
The control plane's static tokens are not Secrets and are not registered.

What the session produced is registered the same way: log files and process work folders (the files a
secret volume was written to and the ServiceAccount kubeconfig are left out: holding the secret is their
job), every Event and every TradingSystem version the recorder saw, /metrics scrapes of the processes
before they stop, and error responses a test captured. Captures live in a per-session artifacts folder
(`QUANTZOO_TEST_ARTIFACTS`, else a fresh temporary folder), which also gets the scan's report.

`find_leaks` is the pure part: it looks for each secret, raw and base64-encoded, in each text.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 8
"""Shorter values would match ordinary text; they are counted but not searched."""
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
NOT_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token", "helm.sh/release.v1"})
LOG_SUFFIXES = (".log", ".jsonl", ".out", ".err")


# -- the pure part -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leak:
    origin: str
    """Where the secret came from (e.g. `Secret t-1/demo-engine-admin[token]`)."""
    where: str
    """Which produced text holds it (a file path or a capture label)."""
    form: str
    """raw | base64 | urlencoded"""
    excerpt: str
    """The surrounding text with the secret itself replaced by <SECRET>."""


def variants(value: str) -> dict[str, str]:
    """The forms a leaked value can take in a log or an API object."""
    out = {"raw": value, "base64": base64.b64encode(value.encode()).decode()}
    quoted = urllib.parse.quote(value, safe="")
    if quoted != value:
        out["urlencoded"] = quoted
    return out


def find_leaks(secrets: Mapping[str, str], sources: Iterable[tuple[str, str]]) -> list[Leak]:
    """Each (secret, form) found in each (where, text); `secrets` maps value -> origin."""
    searchable = {v: o for v, o in secrets.items() if len(v) >= MIN_SECRET_LENGTH}
    leaks: list[Leak] = []
    for where, text in sources:
        for value, origin in searchable.items():
            for form, needle in variants(value).items():
                at = text.find(needle)
                if at < 0:
                    continue
                excerpt = text[max(at - 80, 0) : at + len(needle) + 80].replace(needle, "<SECRET>")
                leaks.append(Leak(origin, where, form, excerpt.replace("\n", "\\n")))
    return leaks


# -- the registry --------------------------------------------------------------------------------------
@dataclass
class Registry:
    artifacts: Path | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    files: set[Path] = field(default_factory=set)
    trees: dict[Path, set[Path]] = field(default_factory=dict)
    """Folders to scan whole, each with the sub-paths to leave out."""
    urls: dict[str, str] = field(default_factory=dict)
    """Live endpoints to scrape at scan time (if still up): url -> label."""
    kubeconfig: Path | None = None
    """Set while the session's cluster is up: the scan then also reads Events and TradingSystems live."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _captures: int = 0

    def folder(self) -> Path:
        with self._lock:
            if self.artifacts is None:
                chosen = os.environ.get("QUANTZOO_TEST_ARTIFACTS")
                if chosen:
                    self.artifacts = Path(chosen)
                else:
                    self.artifacts = Path(tempfile.mkdtemp(prefix="quantzoo-artifacts-"))
            self.artifacts.mkdir(parents=True, exist_ok=True)
            return self.artifacts

    # what was used
    def secret(self, value: str | bytes | None, origin: str) -> None:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                return
        value = (value or "").strip()
        if value:
            with self._lock:
                self.secrets.setdefault(value, origin)

    # what was produced
    def file(self, path: str | Path) -> None:
        with self._lock:
            self.files.add(Path(path))

    def tree(self, root: str | Path, exclude: Iterable[str | Path] = ()) -> None:
        with self._lock:
            self.trees.setdefault(Path(root), set()).update(Path(p) for p in exclude)

    def url(self, url: str, label: str) -> None:
        with self._lock:
            self.urls[url] = label

    def forget_url(self, url: str) -> None:
        with self._lock:
            self.urls.pop(url, None)

    def record(self, label: str, text: str) -> Path:
        """Keep a produced text (a response body, a metrics scrape) in the artifacts folder."""
        folder = self.folder() / "captured"
        folder.mkdir(exist_ok=True)
        with self._lock:
            self._captures += 1
            n = self._captures
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:80]
        path = folder / f"{n:05d}-{safe}.txt"
        path.write_text(f"# {label}\n{text}", errors="replace")
        return path

    def response(self, resp: Any, label: str = "") -> None:
        """An HTTP response a test received (httpx.Response), with its request line."""
        req = resp.request
        self.record(
            f"response-{resp.status_code}-{label}",
            f"{req.method} {req.url}\n{resp.status_code}\n{dict(resp.headers)}\n{resp.text}",
        )

    def scrape(self, url: str, label: str, timeout: float = 2.0) -> bool:
        import httpx

        try:
            resp = httpx.get(url, timeout=timeout)
        except httpx.HTTPError:
            return False
        self.record(label, resp.text)
        return True

    # what to scan
    def produced_files(self) -> Iterator[Path]:
        with self._lock:
            files, trees = set(self.files), {k: set(v) for k, v in self.trees.items()}
        files.update(p for p in self.folder().rglob("*") if p.is_file())
        for root, excluded in trees.items():
            if not root.exists():
                continue
            for path in root.rglob("*"):
                if any(path == ex or ex in path.parents for ex in excluded):
                    continue
                if path.is_file() and not path.is_symlink():
                    files.add(path)
        yield from sorted(p for p in files if p.is_file())


REGISTRY = Registry()


def read_text(path: Path, limit: int = 64 * 1024 * 1024) -> str:
    with path.open("rb") as fh:
        return fh.read(limit).decode("utf-8", errors="replace")


# -- the cluster recorder ------------------------------------------------------------------------------
class ClusterRecorder:
    """Watches Events, TradingSystems and Secrets cluster-wide for the whole session.

    Events and TradingSystems are appended to JSON-lines files in the artifacts folder (a namespace
    deleted at the end of a test takes its Events with it, so reading them at the end would see almost
    nothing); Secret values are registered as secrets. Each watch re-lists after an error (the API server
    is stopped on purpose by some tests) and stops with the session.
    """

    def __init__(self, kubeconfig: Path, registry: Registry = REGISTRY) -> None:
        self.kubeconfig = kubeconfig
        self.registry = registry
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.counts: dict[str, int] = {"events": 0, "tradingsystems": 0, "secrets": 0}

    def start(self) -> ClusterRecorder:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        from quantzoo_api import GROUP, PLURAL, VERSION

        folder = self.registry.folder()
        jobs = {
            "events": (core.list_event_for_all_namespaces, (), folder / "events.jsonl", self._event),
            "tradingsystems": (
                custom.list_cluster_custom_object,
                (GROUP, VERSION, PLURAL),
                folder / "tradingsystems.jsonl",
                self._tradingsystem,
            ),
            "secrets": (core.list_secret_for_all_namespaces, (), None, self._secret),
        }
        for name, (fn, args, out, handle) in jobs.items():
            t = threading.Thread(
                target=self._run, args=(name, fn, args, out, handle), name=f"recorder-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)
        self.registry.kubeconfig = self.kubeconfig
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.registry.kubeconfig = None

    def _run(self, name: str, fn: Any, args: tuple, out: Path | None, handle: Any) -> None:
        from kubernetes import watch
        from kubernetes.client import ApiException

        def plain(obj: Any) -> dict:
            return obj if isinstance(obj, dict) else fn.__self__.api_client.sanitize_for_serialization(obj)

        def take(raw: dict) -> None:
            line = handle(raw)
            if line is not None and out is not None:
                with out.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line, default=str) + "\n")
            self.counts[name] += 1

        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:  # (re)list, then watch from where the list ended
                    listed = plain(fn(*args, _request_timeout=10))
                    for item in listed.get("items") or []:
                        take(item)
                    rv = (listed.get("metadata") or {}).get("resourceVersion")
                w = watch.Watch()
                # Short server-side timeouts: the loop notices the end of the session within seconds.
                for event in w.stream(fn, *args, resource_version=rv, timeout_seconds=5, _request_timeout=10):
                    if event.get("type") == "ERROR":
                        rv = None  # 410 Gone: the resourceVersion is too old, list again
                        break
                    take(plain(event["object"]))
                    if self._stop.is_set():
                        break
                else:
                    rv = w.resource_version or rv
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                else:
                    self._stop.wait(1.0)
            except Exception:  # the API server is down or restarting: try again shortly
                self._stop.wait(1.0)

    @staticmethod
    def _event(raw: dict) -> dict:
        return raw

    @staticmethod
    def _tradingsystem(raw: dict) -> dict:
        meta = raw.get("metadata") or {}
        return {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "resourceVersion": meta.get("resourceVersion"),
            "status": raw.get("status"),
            "annotations": meta.get("annotations"),
        }

    def _secret(self, raw: dict) -> None:
        meta = raw.get("metadata") or {}
        if raw.get("type") in NOT_SECRET_TYPES or meta.get("namespace") in SYSTEM_NAMESPACES:
            return None
        origin = f"Secret {meta.get('namespace')}/{meta.get('name')}"
        for key, value in (raw.get("data") or {}).items():
            with contextlib.suppress(ValueError):
                self.registry.secret(base64.b64decode(value), f"{origin}[{key}]")
        for key, value in (raw.get("stringData") or {}).items():
            self.registry.secret(value, f"{origin}[{key}]")
        return None


def wait_quiet(seconds: float = 0.5) -> None:
    """Give watches a moment to deliver what just happened (used before a final scan)."""
    time.sleep(seconds)


# -- the scan ------------------------------------------------------------------------------------------
@dataclass
class ScanReport:
    secrets_registered: int = 0
    secrets_searched: int = 0
    files: int = 0
    bytes: int = 0
    event_records: int = 0
    tradingsystem_records: int = 0
    captures: int = 0
    leaks: list[Leak] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "leaks"}
        out["leaks"] = len(self.leaks)
        return out


def scan(registry: Registry, extra_files: Iterable[Path] = ()) -> ScanReport:
    """Grep every produced file for every registered secret (raw, base64, URL-encoded)."""
    report = ScanReport(secrets_registered=len(registry.secrets))
    with registry._lock:
        secrets = dict(registry.secrets)
    report.secrets_searched = sum(1 for v in secrets if len(v) >= MIN_SECRET_LENGTH)
    files = sorted({*registry.produced_files(), *(p for p in extra_files if p.is_file())})
    folder = registry.folder()

    def sources() -> Iterator[tuple[str, str]]:
        for path in files:
            text = read_text(path)
            report.files += 1
            report.bytes += len(text)
            if path.parent == folder and path.name == "events.jsonl":
                report.event_records += text.count("\n")
            elif path.parent == folder and path.name == "tradingsystems.jsonl":
                report.tradingsystem_records += text.count("\n")
            elif path.parent.name == "captured":
                report.captures += 1
            yield str(path), text

    report.leaks = find_leaks(secrets, sources())
    return report
