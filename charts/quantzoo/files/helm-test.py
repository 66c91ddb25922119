"""`helm test` check, run in the quantzoo image: the CRD is Established and the operator answers /healthz.

Standard library only. Reads the in-cluster service-account token; KUBERNETES_API_URL, QUANTZOO_CRD_NAME,
QUANTZOO_OPERATOR_URL, QUANTZOO_SERVICEACCOUNT_DIR and QUANTZOO_TEST_TIMEOUT override the defaults.
"""

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

SA_DIR = os.environ.get("QUANTZOO_SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
API = os.environ.get("KUBERNETES_API_URL", "https://kubernetes.default.svc")
CRD = os.environ.get("QUANTZOO_CRD_NAME", "tradingsystems.trading.quantzoo.io")
OPERATOR = os.environ["QUANTZOO_OPERATOR_URL"]
DEADLINE = time.monotonic() + float(os.environ.get("QUANTZOO_TEST_TIMEOUT", "60"))


def _get(url, headers=None, context=None):
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - fixed http(s) URLs
    with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
        return response.status, response.read()


def crd_established():
    headers, context = {"Accept": "application/json"}, None
    token_file = os.path.join(SA_DIR, "token")
    if os.path.exists(token_file):
        with open(token_file) as fh:
            headers["Authorization"] = "Bearer " + fh.read().strip()
        context = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
    _, body = _get(f"{API}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}", headers, context)
    conditions = json.loads(body).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def operator_healthy():
    status, _ = _get(f"{OPERATOR}/healthz")
    return status == 200


def wait_for(what, check):
    last = "never checked"
    while True:
        try:
            if check():
                print(f"ok: {what}")
                return True
            last = "not yet"
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > DEADLINE:
            print(f"FAIL: {what} ({last})", file=sys.stderr)
            return False
        time.sleep(2)


ok = wait_for(f"CRD {CRD} is Established", crd_established)
ok = wait_for(f"operator answers {OPERATOR}/healthz", operator_healthy) and ok
sys.exit(0 if ok else 1)
