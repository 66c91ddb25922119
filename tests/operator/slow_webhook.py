"""A validating admission webhook that holds StatefulSet updates until the test lets them go.

It makes the operator's reconcile of one TradingSystem slow on purpose -- a real API request stuck in
the real API server's admission chain -- so a test can show that the kill switch does not wait behind
it. Served over HTTPS with a throwaway self-signed certificate for 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubernetes import client

from tests.operator.standin_engine import free_port


class SlowWebhook:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        max_hold: float = 25.0,
        operations: tuple[str, ...] = ("UPDATE",),
    ) -> None:
        self.api = client.AdmissionregistrationV1Api(api)
        self.namespace = namespace
        self.max_hold = max_hold
        self.operations = list(operations)
        self.name = f"quantzoo-test-slow-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.held = 0  # requests being held right now
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="slow-webhook-"))
        self._server: ThreadingHTTPServer | None = None

    @property
    def holding(self) -> bool:
        with self._lock:
            return self.held > 0

    def _certificate(self) -> tuple[Path, Path]:
        cert, key = self._dir / "tls.crt", self._dir / "tls.key"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert, key

    def start(self) -> SlowWebhook:
        cert, key = self._certificate()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook._lock:
                    hook.held += 1
                hook.arrived.set()
                hook.released.wait(hook.max_hold)
                with hook._lock:
                    hook.held -= 1
                body = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": True},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

        self.api.create_validating_webhook_configuration(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": self.name},
                "webhooks": [
                    {
                        "name": "slow.statefulsets.quantzoo.test",
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{self.port}/validate",
                            "caBundle": base64.b64encode(cert.read_bytes()).decode(),
                        },
                        "rules": [
                            {
                                "apiGroups": ["apps"],
                                "apiVersions": ["v1"],
                                "operations": self.operations,
                                "resources": ["statefulsets"],
                            }
                        ],
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 30,
                        "failurePolicy": "Ignore",
                    }
                ],
            }
        )
        return self

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        with contextlib.suppress(client.ApiException):
            self.api.delete_validating_webhook_configuration(self.name)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
