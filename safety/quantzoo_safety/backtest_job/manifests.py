"""The objects of a backtest on the cluster, built from a typed request (pure: no API calls).

A Job runs `quantzoo backtest` in our image (or one built FROM it) under the restricted Pod Security
profile: non-root, read-only root filesystem, every capability dropped, no service-account token (it
calls no API: the report leaves through its log), an emptyDir for its output, CPU/memory limits, a
deadline, no retry (a backtest is deterministic: a second attempt fails the same way) and a TTL. The
bars come from a ConfigMap the plugin creates, owned by the Job so they go when it goes, or from a
path inside the image.
"""

from __future__ import annotations

import base64
import json
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

APP = "quantzoo-backtest"
LABEL_APP = "app.kubernetes.io/name"
LABEL_BACKTEST = "trading.quantzoo.io/backtest"
ANNOTATION_STRATEGY = "trading.quantzoo.io/strategy"
CONTAINER = "backtest"
RUN_AS = 10001  # the image's user (Dockerfile)
BARS_DIR = "/bars"
SCRATCH_DIR = "/tmp"  # noqa: S108 (in the pod: an emptyDir, the image's WORKDIR; the root filesystem is read-only)
REPORT_DIR = f"{SCRATCH_DIR}/report"
# The API server refuses a ConfigMap whose keys and values together exceed 1 MiB.
CONFIGMAP_MAX_BYTES = 1024 * 1024
DEFAULT_IMAGE_REPOSITORY = "quantzoo/quantzoo"  # as the chart's image.repository
DEFAULT_DEADLINE_SECONDS = 1800
DEFAULT_TTL_SECONDS = 86400
# Job names become a pod label value (63 characters); "-bars" is added for the ConfigMap.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,56}[a-z0-9])?$"

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


class BarsTooLarge(ValueError):
    pass


class BarsFile(BaseModel):
    """Bars handed in through a ConfigMap: the local file's name and bytes."""

    model_config = ConfigDict(frozen=True)
    filename: str
    data: bytes

    @property
    def key(self) -> str:
        # `quantzoo backtest` picks the reader by the suffix (Parquet or CSV).
        suffix = PurePosixPath(self.filename).suffix.lower()
        return "bars" + (suffix if suffix in (".parquet", ".pq", ".csv") else ".csv")

    @property
    def path(self) -> str:
        return f"{BARS_DIR}/{self.key}"


class BarsInImage(BaseModel):
    """Bars already in the image (a team's image built FROM ours can carry its data)."""

    model_config = ConfigDict(frozen=True)
    path: str

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("a path inside the image must be absolute (image:/data/bars.parquet)")
        return v


class BacktestJobRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str
    image: str = Field(min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    strategy: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] = Field(default_factory=list)
    initial_cash: float | None = Field(default=None, gt=0)
    bars: BarsFile | BarsInImage
    cpu: str = "1"
    memory: str = "1Gi"
    deadline_seconds: int = Field(default=DEFAULT_DEADLINE_SECONDS, ge=1)
    ttl_seconds: int = Field(default=DEFAULT_TTL_SECONDS, ge=0)

    @property
    def configmap_name(self) -> str:
        return f"{self.name}-bars"


def default_image(version: str) -> str:
    return f"{DEFAULT_IMAGE_REPOSITORY}:{version}"


def check_bars_size(bars: BarsFile) -> None:
    """Raises BarsTooLarge, saying what to do instead, when the bars cannot travel in a ConfigMap."""
    size = len(bars.key) + len(bars.data)
    if size > CONFIGMAP_MAX_BYTES:
        raise BarsTooLarge(
            f"{bars.filename} is {len(bars.data) / 2**20:.2f} MiB; bars handed in by a ConfigMap must "
            "fit in 1 MiB (the API server's limit). Write fewer bars, or Parquet instead of CSV, or "
            "put them in an image built FROM ours and pass --bars image:/path/in/the/image"
        )


def labels(req: BacktestJobRequest) -> dict[str, str]:
    return {LABEL_APP: APP, LABEL_BACKTEST: req.name}


def backtest_args(req: BacktestJobRequest) -> list[str]:
    """The `quantzoo backtest` command line the Job runs."""
    bars_path = req.bars.path
    args = ["backtest", "--bars", bars_path, "--strategy", req.strategy]
    args += ["--params", json.dumps(req.params, separators=(",", ":"), sort_keys=True)]
    if req.symbols:
        args += ["--symbols", ",".join(req.symbols)]
    if req.initial_cash is not None:
        args += ["--initial-cash", repr(req.initial_cash)]
    return [*args, "--out", REPORT_DIR, "--report-stdout"]


def pod_spec(req: BacktestJobRequest) -> dict[str, Any]:
    mounts = [{"name": "scratch", "mountPath": SCRATCH_DIR}]
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"sizeLimit": "256Mi"}}]
    if isinstance(req.bars, BarsFile):
        mounts.append({"name": "bars", "mountPath": BARS_DIR, "readOnly": True})
        volumes.append({"name": "bars", "configMap": {"name": req.configmap_name}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": req.image,
        "command": ["quantzoo"],
        "args": backtest_args(req),
        "env": [{"name": "HOME", "value": SCRATCH_DIR}],
        # Memory request = limit: a backtest holds its bars in memory, so it is not scheduled where it
        # would be the first to be evicted.
        "resources": {
            "requests": {"cpu": "250m", "memory": req.memory},
            "limits": {"cpu": req.cpu, "memory": req.memory},
        },
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": mounts,
        # A failure's last lines (the strategy's own validation message) land in the pod's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if req.image_pull_policy:
        container["imagePullPolicy"] = req.image_pull_policy
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }


def build_job(req: BacktestJobRequest) -> dict[str, Any]:
    """The Job. Created suspended when its bars come by ConfigMap: no pod starts before they exist
    (the plugin creates the ConfigMap, owned by the Job, then resumes it)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": req.name,
            "namespace": req.namespace,
            "labels": labels(req),
            "annotations": {ANNOTATION_STRATEGY: req.strategy},
        },
        "spec": {
            "suspend": isinstance(req.bars, BarsFile),
            "backoffLimit": 0,
            "activeDeadlineSeconds": req.deadline_seconds,
            "ttlSecondsAfterFinished": req.ttl_seconds,
            "template": {"metadata": {"labels": labels(req)}, "spec": pod_spec(req)},
        },
    }


def build_bars_configmap(req: BacktestJobRequest, job_uid: str) -> dict[str, Any]:
    """The bars, owned by the Job (garbage-collected with it when its TTL runs out)."""
    if not isinstance(req.bars, BarsFile):
        raise TypeError("the bars of this backtest are in the image")
    check_bars_size(req.bars)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": req.configmap_name,
            "namespace": req.namespace,
            "labels": labels(req),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": req.name, "uid": job_uid}],
        },
        "immutable": True,
        "binaryData": {req.bars.key: base64.b64encode(req.bars.data).decode("ascii")},
    }
