"""The one image (operator, engine, safety): hadolint, and the project's image policy.

Policy (checked on the Dockerfile; no container engine runs here to build it): multi-stage (a wheel built
from pyproject.toml in a builder, installed into a venv, the venv copied onto python:3.11-slim), pinned base
tags, no ADD of URLs, a numeric non-root USER that matches the chart's runAsUser, no build tools in the final
stage, a documented probe instead of a HEALTHCHECK, and a build context limited by .dockerignore.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|yum|dnf|gcc|g\+\+|cc|make|build-essential|python3?-dev|pip\s+wheel|git|curl|wget)\b"
)
ENTRYPOINTS = ("quantzoo-operator", "quantzoo-engine", "quantzoo-safety")


def policy_violations(df) -> list[str]:
    problems = []
    if len(df.stages) < 2:
        problems.append("not multi-stage")
        return problems
    for stage in df.stages:
        image = stage.base
        if "$" in image:
            problems.append(f"FROM {image}: unresolved build argument")
        elif "@sha256:" not in image:
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append(f"FROM {image}: base image tag not pinned")
        for args in stage.all("ADD"):
            if re.search(r"https?://", args):
                problems.append(f"ADD of a URL: {args}")
    final = df.stages[-1]
    if not re.match(r"python:3\.11(\.\d+)?-slim", final.base):
        problems.append(f"final stage is {final.base}, not python:3.11-slim")
    users = final.all("USER")
    if not users:
        problems.append("final stage has no USER")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit():
            problems.append(f"USER {users[-1]} is not numeric (runAsNonRoot cannot verify a name)")
        elif int(uid) == 0:
            problems.append("USER is root")
    for args in final.all("RUN"):
        if BUILD_TOOLS.search(args):
            problems.append(f"build tool in the final stage: RUN {args}")
    if not any("--from=" in args and "/opt/venv" in args for args in final.all("COPY")):
        problems.append("final stage does not copy the venv from the builder")
    builder_runs = " ".join(a for s in df.stages[:-1] for a in s.all("RUN"))
    if "wheel" not in builder_runs:
        problems.append("no wheel is built in a builder stage")
    if not any("pyproject.toml" in a for s in df.stages[:-1] for a in s.all("COPY")):
        problems.append("the builder does not build from pyproject.toml")
    documented_probe = any("probe" in c.lower() for c in df.comments)
    if not final.all("HEALTHCHECK") and not documented_probe:
        problems.append("no HEALTHCHECK and no documented probe")
    cmd = (final.all("CMD") or final.all("ENTRYPOINT") or [""])[-1]
    if not cmd.startswith("["):
        problems.append("CMD/ENTRYPOINT is not in exec form")
    return problems


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore semantics for the patterns used here: later patterns win, `!` re-includes."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if pattern.startswith("**/"):
            hit = hit or any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        if hit:
            excluded = not negate
    return excluded


# ---------------------------------------------------------------- hadolint


def test_hadolint(hadolint):
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_on_the_strategy_template(hadolint):
    template = REPO / "examples" / "strategy-template" / "Dockerfile"
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(template)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_not_vacuous(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nADD http://x/y /y\n")
    proc = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # latest tag


# ---------------------------------------------------------------- policy


def test_dockerfile_policy(parse):
    df = parse(DOCKERFILE.read_text())
    assert policy_violations(df) == []
    assert [s.name for s in df.stages] == ["builder", None]


def test_policy_catches_a_bad_dockerfile(parse):
    bad = parse(
        "FROM python:latest\n"
        "ADD https://example.invalid/get.sh /get.sh\n"
        "RUN apt-get update && apt-get install -y build-essential \\\n    && pip install .\n"
        "USER app\n"
        "CMD quantzoo-operator\n"
    )
    assert policy_violations(bad) == ["not multi-stage"]
    two = parse(
        "FROM python:3.11-slim AS builder\nRUN true\n"
        "FROM ubuntu\nRUN apt-get install -y gcc\nADD http://example.invalid/x /x\nUSER root\nCMD run\n"
    )
    problems = policy_violations(two)
    expected = [
        "not pinned", "ADD of a URL", "not python:3.11-slim", "not numeric", "build tool",
        "does not copy the venv", "no wheel", "pyproject.toml", "HEALTHCHECK", "exec form",
    ]  # fmt: skip
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


def test_user_matches_the_chart_security_context(parse):
    df = parse(DOCKERFILE.read_text())
    uid, _, gid = df.stages[-1].all("USER")[-1].partition(":")
    values = yaml.safe_load((REPO / "charts" / "quantzoo" / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]


def test_one_image_serves_the_three_components(parse):
    text = DOCKERFILE.read_text()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for entrypoint in ENTRYPOINTS:
        assert entrypoint in scripts, f"{entrypoint} is not a [project.scripts] entry point"
        assert entrypoint in text
    final = parse(text).stages[-1]
    exposed = {p for args in final.all("EXPOSE") for p in args.split()}
    assert exposed == {"8080", "8001", "8888"}
    assert final.all("CMD") == ['["quantzoo-operator"]']


def test_build_context(parse):
    df = parse(DOCKERFILE.read_text())
    for args in df.stages[0].all("COPY"):
        if args.startswith("--"):
            continue
        *sources, _ = args.split()
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: no such path"
            assert not dockerignore_excludes(src.rstrip("/")), f"COPY {src} is excluded by .dockerignore"
    for kept in ("engine/quantzoo_engine/__init__.py", "crds/trading.quantzoo.io_tradingsystems.yaml"):
        assert not dockerignore_excludes(kept)
    for dropped in (".venv/bin/python", ".git/HEAD", "tests/chart/conftest.py", "charts/quantzoo/values.yaml",
                    "engine/quantzoo_engine/__pycache__/x.pyc"):  # fmt: skip
        assert dockerignore_excludes(dropped), dropped
    # Every package the wheel ships is in the context (hatch's packages + force-include).
    hatch = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    copied = " ".join(df.stages[0].all("COPY"))
    for package in hatch["packages"]:
        assert package.split("/")[0] + "/" in copied, package
    for source in hatch.get("force-include", {}):
        assert source.split("/")[0] + "/" in copied, source


@pytest.mark.parametrize("readme", ["charts/quantzoo/README.md"])
def test_build_and_kind_load_are_documented(readme):
    text = (REPO / readme).read_text()
    assert "docker build -t quantzoo/quantzoo:0.1.0 ." in text
    assert "kind load docker-image quantzoo/quantzoo:0.1.0" in text
