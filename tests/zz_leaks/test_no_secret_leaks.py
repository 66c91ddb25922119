"""No secret value appears in anything the test session produced.

Runs last (conftest.py here moves it to the end). Secrets: every Secret value that existed in the
cluster during the session, every value the pod runner materialised, and what tests registered
(hack/devcluster/leaks.py). Produced: operator, engine, safety and pod-runner logs and work folders, every
Event and every TradingSystem version the session recorder saw, plus `kubectl get events -A` and every
TradingSystem status now, /metrics of every process (scraped before it stopped, or now), error responses
tests captured, and log files under pytest's temporary folder. The first test shows the detector can fail.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from hack.devcluster import leaks
from hack.devcluster.leaks import REGISTRY, Registry, find_leaks, scan


def test_the_detector_catches_a_planted_secret(tmp_path: Path) -> None:
    registry = Registry(artifacts=tmp_path / "artifacts")
    planted = f"planted-{uuid.uuid4().hex}"
    encoded = f"encoded-{uuid.uuid4().hex}"
    hidden = f"hidden-{uuid.uuid4().hex}"
    registry.secret(planted, "Secret ns/planted[token]")
    registry.secret(encoded.encode(), "Secret ns/encoded[token]")
    registry.secret(hidden, "Secret ns/hidden[token]")
    registry.secret("short", "too short to search")
    work = tmp_path / "pod"
    (work / "mounts" / "token").mkdir(parents=True)
    (work / "mounts" / "token" / "token").write_text(hidden)  # holding it is the volume's job: skipped
    (work / "process.log").write_text(f'{{"msg": "calling engine with Bearer {planted}"}}\nshort\n')
    registry.tree(work, [work / "mounts" / "token"])
    registry.record("events", json.dumps({"message": base64.b64encode(encoded.encode()).decode()}))
    clean = tmp_path / "clean.log"
    clean.write_text("nothing to see")
    registry.file(clean)

    report = scan(registry)
    found = {(leak.origin, leak.form) for leak in report.leaks}
    assert found == {("Secret ns/planted[token]", "raw"), ("Secret ns/encoded[token]", "base64")}
    (leak,) = [x for x in report.leaks if x.form == "raw"]
    assert leak.where.endswith("process.log")
    assert planted not in leak.excerpt
    assert "Bearer <SECRET>" in leak.excerpt
    assert report.secrets_registered == 4
    assert report.secrets_searched == 3
    assert report.files == 3  # process.log, the capture, clean.log (not the mounted token)


def test_url_encoded_forms_are_found() -> None:
    secret = "a+b/c=d-e_f~g"
    (leak,) = find_leaks({secret: "s"}, [("url", "GET /x?token=a%2Bb%2Fc%3Dd-e_f~g")])
    assert leak.form == "urlencoded"


def test_no_secret_leaks_anywhere_the_session_wrote(request: pytest.FixtureRequest) -> None:
    extra: list[Path] = []
    if REGISTRY.kubeconfig is not None:  # the session's cluster is up: read what is there now
        cluster = request.getfixturevalue("cluster")
        for what in (["get", "events", "-A", "-o", "json"], ["get", "tradingsystems", "-A", "-o", "json"]):
            done = cluster.kubectl(*what, check=False)
            REGISTRY.record(f"final-{what[1]}", done.stdout + done.stderr)
        for url, label in dict(REGISTRY.urls).items():
            REGISTRY.scrape(url, f"final-{label}", timeout=1)
        leaks.wait_quiet()
    basetemp = request.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    extra += [p for p in Path(basetemp).rglob("*") if p.suffix in leaks.LOG_SUFFIXES and p.is_file()]
    # The self-test above planted a secret in its own private registry; this one does not know it.
    report = scan(REGISTRY, extra)
    summary = report.summary()
    (REGISTRY.folder() / "leak-scan.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsecret leak scan: {json.dumps(summary)} (artifacts: {REGISTRY.folder()})")
    assert not report.leaks, "secret values found in what the session produced:\n" + "\n".join(
        f"- {leak.origin} ({leak.form}) in {leak.where}: ...{leak.excerpt}..." for leak in report.leaks
    )
