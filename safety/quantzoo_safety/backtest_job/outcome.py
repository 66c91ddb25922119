"""What a backtest Job and its pod say, read as a user wants it (pure: API objects as dicts in).

The report travels in the pod's log: `quantzoo backtest --report-stdout` prints it as the last line. The
log stays readable for as long as the pod exists, that is until the Job's ttlSecondsAfterFinished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from quantzoo_safety.backtest_job.manifests import ANNOTATION_STRATEGY, CONTAINER

LOG_TAIL_LINES = 15
# Waiting reasons a pod does not recover from by itself (a failed pull may succeed later; these do not).
UNSTARTABLE = frozenset({"ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError"})


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class BacktestStatus:
    name: str
    strategy: str
    phase: Phase
    reason: str = ""
    message: str = ""
    started: str | None = None
    completed: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED)

    @property
    def unstartable(self) -> bool:
        return self.phase is Phase.PENDING and self.reason in UNSTARTABLE

    @property
    def duration_seconds(self) -> float | None:
        if not (self.started and self.completed):
            return None
        return (_parse_time(self.completed) - _parse_time(self.started)).total_seconds()


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(job: dict[str, Any], *types: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cond
    return None


def _container_state(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The backtest container's state in the newest pod ({} before the kubelet reports one)."""
    newest = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")[-1:] or [{}]
    for status in (newest[0].get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status.get("state") or {}
    return {}


def status_of(job: dict[str, Any], pods: list[dict[str, Any]]) -> BacktestStatus:
    meta, spec, st = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    base = {
        "name": meta["name"],
        "strategy": (meta.get("annotations") or {}).get(ANNOTATION_STRATEGY, "?"),
        "started": st.get("startTime"),
    }
    state = _container_state(pods)
    terminated = state.get("terminated") or {}
    if failed := _condition(job, "Failed", "FailureTarget"):
        # The Job's reason (BackoffLimitExceeded, DeadlineExceeded) says little alone: the container's
        # own (Error with the exit code, OOMKilled) and its last lines say why.
        detail = [failed.get("message") or ""]
        if terminated:
            detail.append(
                f"container {terminated.get('reason', 'exited')} (exit code {terminated.get('exitCode')})"
            )
        return BacktestStatus(
            **base,
            phase=Phase.FAILED,
            reason=failed.get("reason") or "Failed",
            message="; ".join(d for d in detail if d),
            completed=failed.get("lastTransitionTime"),
        )
    if _condition(job, "Complete", "SuccessCriteriaMet"):
        return BacktestStatus(**base, phase=Phase.SUCCEEDED, completed=st.get("completionTime"))
    if spec.get("suspend"):
        return BacktestStatus(**base, phase=Phase.PENDING, reason="Suspended", message="waiting for its bars")
    if "running" in state:
        return BacktestStatus(**base, phase=Phase.RUNNING)
    waiting = state.get("waiting") or {}
    return BacktestStatus(
        **base,
        phase=Phase.PENDING,
        reason=waiting.get("reason") or ("PodCreated" if pods else "NoPodYet"),
        message=waiting.get("message") or "",
    )


def termination_message(pods: list[dict[str, Any]]) -> str:
    """The container's termination message: on failure, the tail of its log (FallbackToLogsOnError)."""
    return ((_container_state(pods).get("terminated") or {}).get("message") or "").strip()


def log_tail(log: str, lines: int = LOG_TAIL_LINES) -> str:
    # The report line can be long: a failed run never printed it, a tail of a finished one leaves it out.
    kept = [line for line in log.splitlines() if line.strip() and not line.startswith("{")]
    return "\n".join(kept[-lines:])


def report_from_log(log: str) -> dict[str, Any] | None:
    """The JSON report: the log's last non-empty line, if it is one."""
    for line in reversed(log.splitlines()):
        if line.strip():
            try:
                report = json.loads(line)
            except ValueError:
                return None
            return report if isinstance(report, dict) and "summary" in report else None
    return None


def summary_line(report: dict[str, Any]) -> str:
    s = report["summary"]
    sharpe = "n/a" if s.get("sharpe") is None else f"{s['sharpe']:.2f}"
    return (
        f"backtest {report['strategy']['name']} on {','.join(report['symbols'])}: "
        f"{report['period']['bars']} bars; return {s['total_return_pct']:.2f}%, Sharpe {sharpe}, "
        f"max drawdown {s['max_drawdown_pct']:.2f}%, {s['trades']} trades, {s['fills']} fills, "
        f"{s['orders_refused']} refused by the risk checks"
    )


def status_rows(statuses: list[BacktestStatus]) -> list[list[str]]:
    rows = [["NAME", "STRATEGY", "STATUS", "REASON", "STARTED", "DURATION"]]
    for s in statuses:
        duration = s.duration_seconds
        rows.append(
            [
                s.name,
                s.strategy,
                s.phase.value,
                s.reason or "-",
                s.started or "-",
                "-" if duration is None else f"{duration:.0f}s",
            ]
        )
    return rows
