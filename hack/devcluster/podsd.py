"""Pod discovery for a Prometheus built without kubernetes_sd (Debian's): an HTTP SD endpoint on the node
that lists the cluster's pods from the API server and answers them as kubernetes_sd's pod role would label
them (podmonitors.pod_targets). Prometheus polls it every refresh interval, as kubernetes_sd watches.

Served on the node's address, which pods reach (the node's firewall lets pod traffic to this host).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hack.devcluster import podmonitors

PATH = "/pods"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path != PATH:
            self.send_error(404)
            return
        body = json.dumps(self.server.targets()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: Prometheus polls every few seconds."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], list_pods: Callable[[], list[dict]], ttl: float) -> None:
        super().__init__(address, _Handler)
        self._list_pods = list_pods
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[dict]] | None = None

    def targets(self) -> list[dict]:
        # One API list per ttl, however many scrape jobs ask (each PodMonitor endpoint is one job).
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                self._cached = (now, podmonitors.pod_targets(self._list_pods()))
            return self._cached[1]


@contextmanager
def serving(host: str, list_pods: Callable[[], list[dict]], ttl: float = 2.0) -> Iterator[str]:
    """Serve the discovery endpoint on `host` (a free port); yields its URL."""
    server = _Server((host, 0), list_pods, ttl)
    thread = threading.Thread(target=server.serve_forever, name="pod-sd", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}{PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
