"""The commands of docs/STRATEGIES.md, as the tests run them: each ```bash block preceded by a
`<!-- tutorial: KIND -->` marker, in order, with the template installed into a directory of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "STRATEGIES.md"
BLOCK = re.compile(r"<!-- tutorial: (\w+) -->\s*```bash\n(.*?)```", re.DOTALL)


def blocks(kind: str) -> list[str]:
    return [body for k, body in BLOCK.findall(DOC.read_text()) if k == kind]


def workdir(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A directory holding what the tutorial reads from a checkout, and the environment to run it in:
    the test venv first on PATH, `pip install` going into `site/` (PIP_TARGET), which is on PYTHONPATH,
    so the template is installed as its own distribution without touching the test venv."""
    root = tmp / "checkout"
    shutil.copytree(REPO / "examples" / "strategy-template", root / "examples" / "strategy-template")
    site = tmp / "site"
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTZOO_", "ENGINE_", "PIP_"))}
    env.update(
        {
            "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
            "PIP_TARGET": str(site),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONPATH": str(site),
        }
    )
    return root, env


def run_block(body: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
