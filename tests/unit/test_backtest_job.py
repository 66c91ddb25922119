"""The backtest Job's manifests, what the plugin reads from a Job and its pod, and its argument checks:
pure, no cluster (tests/pods/test_backtest_job.py runs it on real pods)."""

from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path

import pytest
from quantzoo_safety import kubectl_plugin
from quantzoo_safety.backtest_job import command, manifests, outcome
from quantzoo_safety.backtest_job.manifests import BacktestJobRequest, BarsFile, BarsInImage, BarsTooLarge


def request(**kw) -> BacktestJobRequest:
    base = {
        "name": "bt-1",
        "namespace": "research",
        "image": "quantzoo/quantzoo:0.1.0",
        "strategy": "bollingerReversion",
        "params": {"window": 30},
        "symbols": ["AAPL", "MSFT"],
        "bars": BarsFile(filename="week.PARQUET", data=b"PAR1..."),
    }
    return BacktestJobRequest(**{**base, **kw})


# ------------------------------------------------------------------------------------------- manifests
def test_the_job_runs_quantzoo_backtest_with_the_report_on_stdout():
    job = manifests.build_job(request(initial_cash=50000.0))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["quantzoo"]
    assert container["args"] == [
        *("backtest", "--bars", "/bars/bars.parquet", "--strategy", "bollingerReversion"),
        *("--params", '{"window":30}', "--symbols", "AAPL,MSFT", "--initial-cash", "50000.0"),
        *("--out", "/tmp/report", "--report-stdout"),
    ]
    assert container["image"] == "quantzoo/quantzoo:0.1.0"
    assert "imagePullPolicy" not in container  # the cluster's default unless asked
    assert job["metadata"]["annotations"] == {manifests.ANNOTATION_STRATEGY: "bollingerReversion"}


def test_the_job_fits_the_restricted_profile_and_is_bounded():
    job = manifests.build_job(request())
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (
        0,
        1800,
        86400,
    )
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # Only the volume types the restricted profile allows; the output goes to an emptyDir.
    assert {next(k for k in v if k != "name") for v in pod["volumes"]} == {"emptyDir", "configMap"}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/bars"}


def test_bars_by_configmap_suspend_the_job_until_they_exist():
    assert manifests.build_job(request())["spec"]["suspend"] is True
    in_image = manifests.build_job(request(bars=BarsInImage(path="/data/b.csv")))
    assert in_image["spec"]["suspend"] is False
    pod = in_image["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["scratch"]
    assert pod["containers"][0]["args"][2] == "/data/b.csv"


def test_the_bars_configmap_is_owned_by_the_job_and_holds_the_bytes():
    cm = manifests.build_bars_configmap(request(), job_uid="uid-123")
    assert cm["metadata"]["name"] == "bt-1-bars"
    assert cm["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "bt-1", "uid": "uid-123"}
    ]
    assert base64.b64decode(cm["binaryData"]["bars.parquet"]) == b"PAR1..."
    assert cm["immutable"] is True


@pytest.mark.parametrize(
    ("filename", "key"), [("a.csv", "bars.csv"), ("a.pq", "bars.pq"), ("a.txt", "bars.csv")]
)
def test_the_bars_key_keeps_the_suffix_the_reader_goes_by(filename, key):
    assert BarsFile(filename=filename, data=b"").key == key


def test_bars_over_one_mib_are_refused_with_what_to_do_instead():
    key = len("bars.csv")
    manifests.check_bars_size(BarsFile(filename="a.csv", data=b"x" * (2**20 - key)))
    with pytest.raises(BarsTooLarge, match=r"1\.00 MiB.*fit in 1 MiB.*--bars image:"):
        manifests.check_bars_size(BarsFile(filename="a.csv", data=b"x" * (2**20 - key + 1)))


@pytest.mark.parametrize("name", ["Bt", "bt_1", "-bt", "b" * 59, ""])
def test_a_name_that_cannot_be_a_job_with_a_bars_configmap_is_refused(name):
    with pytest.raises(ValueError, match="pattern"):
        request(name=name)


# -------------------------------------------------------------------------------------------- outcome
def job(conditions=(), suspend=False, **status):
    return {
        "metadata": {"name": "bt-1", "annotations": {manifests.ANNOTATION_STRATEGY: "breakout"}},
        "spec": {"suspend": suspend},
        "status": {"conditions": list(conditions), "startTime": "2026-12-05T20:00:00Z", **status},
    }


def pod(state, created="2026-12-05T20:00:01Z"):
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"containerStatuses": [{"name": "backtest", "state": state}]},
    }


def test_a_failed_job_gives_its_reason_and_the_containers():
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "lastTransitionTime": "2026-12-05T20:00:09Z",
    }
    terminated = {"terminated": {"exitCode": 2, "reason": "Error", "message": "quantzoo backtest: bad"}}
    s = outcome.status_of(job([failed]), [pod(terminated)])
    assert (s.phase, s.reason, s.strategy, s.finished) == (
        outcome.Phase.FAILED,
        "BackoffLimitExceeded",
        "breakout",
        True,
    )
    assert s.message == "Job has reached the specified backoff limit; container Error (exit code 2)"
    assert s.duration_seconds == 9
    assert outcome.termination_message([pod(terminated)]) == "quantzoo backtest: bad"


def test_complete_suspended_running_and_waiting_jobs():
    done = outcome.status_of(
        job([{"type": "Complete", "status": "True"}], completionTime="2026-12-05T20:00:05Z"), []
    )
    assert (done.phase, done.duration_seconds) == (outcome.Phase.SUCCEEDED, 5)
    assert outcome.status_of(job(suspend=True), []).reason == "Suspended"
    assert outcome.status_of(job(), [pod({"running": {}})]).phase is outcome.Phase.RUNNING
    waiting = outcome.status_of(
        job(), [pod({"waiting": {"reason": "ErrImageNeverPull", "message": "no image"}})]
    )
    assert (waiting.phase, waiting.reason, waiting.message) == (
        outcome.Phase.PENDING,
        "ErrImageNeverPull",
        "no image",
    )
    assert waiting.unstartable
    pulling = outcome.status_of(job(), [pod({"waiting": {"reason": "ImagePullBackOff"}})])
    assert not pulling.unstartable  # a registry that is down may come back
    assert outcome.status_of(job(), []).reason == "NoPodYet"
    # A false condition is no outcome.
    assert not outcome.status_of(job([{"type": "Failed", "status": "False"}]), []).finished


def test_the_report_is_the_logs_last_line_and_the_tail_leaves_it_out():
    report = {"summary": {"trades": 3}, "strategy": {"name": "noop"}}
    log = "backtest noop on AAPL: 10 bars ...\n" + json.dumps(report) + "\n\n"
    assert outcome.report_from_log(log) == report
    assert outcome.log_tail(log) == "backtest noop on AAPL: 10 bars ..."
    assert outcome.report_from_log("quantzoo backtest: strategy.name: unknown strategy\n") is None
    assert outcome.report_from_log('{"not": "a report"}') is None
    assert outcome.report_from_log("") is None


# ------------------------------------------------------------------------------------ the subcommand
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["backtest", "bt-1", "--strategy", "noop"], ["backtest", "run", "bt-1", "--strategy", "noop"]),
        (
            ["--context", "backtest", "backtest", "report", "x"],
            ["--context", "backtest", "backtest", "report", "x"],
        ),
        (["backtest", "status"], ["backtest", "status"]),
        (["kill", "backtest"], ["kill", "backtest"]),  # a TradingSystem called "backtest"
    ],
)
def test_backtest_name_is_short_for_backtest_run_name(argv, expected):
    assert command.normalise_argv(argv) == expected


def run_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    bars = tmp_path / "bars.csv"
    if not bars.exists():
        bars.write_text("timestamp,symbol,open,high,low,close,volume\n2026-01-05T14:30:00Z,AAPL,1,1,1,1,10\n")
    return kubectl_plugin.parse_args(["backtest", "bt-1", "--bars", str(bars), *extra])


def test_a_bad_parameter_is_the_strategys_own_message_and_nothing_is_created(tmp_path):
    args = run_args(tmp_path, "--strategy", "bollingerReversion", "--params", '{"window": 1}')
    with pytest.raises(
        command.BacktestError, match=r"^error: strategy\.params\.window: .*greater than or equal to 2"
    ) as exc:
        command.request_from_args(args, "research")
    assert exc.value.code == 2


def test_an_unknown_strategy_is_refused_here_for_our_image_and_left_to_the_job_for_a_custom_one(tmp_path):
    with pytest.raises(command.BacktestError, match="unknown strategy 'rsiX'"):
        command.request_from_args(run_args(tmp_path, "--strategy", "rsiX"), "research")
    req = command.request_from_args(
        run_args(tmp_path, "--strategy", "rsiX", "--image", "team/strategies:1"), "ns"
    )
    assert (req.strategy, req.image) == ("rsiX", "team/strategies:1")


def test_our_image_of_this_version_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv(command.IMAGE_ENV, raising=False)
    req = command.request_from_args(run_args(tmp_path, "--strategy", "noop"), "research")
    assert req.image.startswith("quantzoo/quantzoo:")
    monkeypatch.setenv(command.IMAGE_ENV, "quantzoo/quantzoo:dev-1")
    assert command.request_from_args(run_args(tmp_path, "--strategy", "noop"), "research").image.endswith(
        "dev-1"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--params", "[1]"], "--params must be a JSON object"),
        (["--params", "{"], "--params is not JSON"),
        (["--ttl", "-1"], "--ttl: Input should be greater than or equal to 0"),
        (["--bars", "image:data.csv"], "must be absolute"),
        (["--bars", "/nonexistent/bars.csv"], "--bars: .*No such file"),
    ],
)
def test_bad_arguments_are_refused_with_the_flag_named(tmp_path, extra, message):
    with pytest.raises(command.BacktestError, match=message):
        command.request_from_args(run_args(tmp_path, "--strategy", "noop", *extra), "research")


# ----------------------------------------------- the subcommand's flow, against a stand-in for the API
class FakeJobs:
    """Stands in for BacktestJobs (the API calls): a Job that has already finished, its one pod and its
    log. Does not model the API server, the Job controller or the kubelet; tests/pods does, on a real node."""

    namespace = "research"

    def __init__(self, conditions: list[dict], log: str, state: dict) -> None:
        self._job = job(conditions)
        self._job["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/job-name": "bt-1"}}
        self._pods = [pod(state)]
        self._log = log
        self.created: list[BacktestJobRequest] = []

    def create(self, req: BacktestJobRequest) -> dict:
        self.created.append(req)
        return self._job

    def job(self, name: str) -> dict:
        if name != "bt-1":
            raise command.BacktestError(f"error: backtest {name}: not found in namespace research")
        return self._job

    def pods(self, job: dict) -> list[dict]:
        return self._pods

    def log(self, pod: dict) -> str:
        return self._log


REPORT = {
    "strategy": {"name": "breakout", "params": {}},
    "symbols": ["AAPL"],
    "period": {"start": "a", "end": "b", "bars": 300},
    "summary": {
        "total_return_pct": 1.5,
        "sharpe": None,
        "max_drawdown_pct": 0.5,
        "trades": 4,
        "fills": 8,
        "orders_refused": 0,
    },
    "equity_curve": [],
    "trades": [],
    "fills": [],
    "risk_refusals_by_reason": {},
}
COMPLETE = [{"type": "Complete", "status": "True"}]
FAILED = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "backoff limit"}]


def plugin(fake: FakeJobs, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = kubectl_plugin.parse_args(list(argv))
    return command.main(args, "research", out, err, jobs=fake), out.getvalue(), err.getvalue()


def test_run_wait_creates_the_job_and_prints_the_reports_summary(tmp_path):
    fake = FakeJobs(COMPLETE, "backtest ...\n" + json.dumps(REPORT) + "\n", {"terminated": {"exitCode": 0}})
    code, out, _ = plugin(fake, *vars_argv(tmp_path), "--strategy", "breakout", "--wait")
    assert code == 0
    assert [r.strategy for r in fake.created] == ["breakout"]
    assert "backtest research/bt-1 created" in out
    assert "backtest breakout on AAPL: 300 bars; return 1.50%, Sharpe n/a" in out


def test_a_failed_job_prints_its_reason_and_log_tail_and_exits_1(tmp_path):
    log = "quantzoo backtest: strategy.params.window: Input should be greater than or equal to 2\n"
    fake = FakeJobs(FAILED, log, {"terminated": {"exitCode": 2, "reason": "Error"}})
    code, _, err = plugin(fake, "backtest", "report", "bt-1")
    assert code == 1
    assert err.splitlines() == [
        "error: backtest research/bt-1 failed: BackoffLimitExceeded: "
        "backoff limit; container Error (exit code 2)",
        "last lines of its log:",
        log.strip(),
    ]


def test_the_report_of_a_running_backtest_says_to_wait(tmp_path):
    fake = FakeJobs([], "", {"running": {}})
    code, _, err = plugin(fake, "backtest", "report", "bt-1")
    assert code == 1
    assert "has not finished (Running); wait for it: kubectl quantzoo backtest status bt-1 --wait" in err


def test_the_report_as_json_html_or_files(tmp_path):
    fake = FakeJobs(COMPLETE, json.dumps(REPORT), {"terminated": {"exitCode": 0}})
    assert json.loads(plugin(fake, "backtest", "report", "bt-1")[1]) == REPORT
    assert plugin(fake, "backtest", "report", "bt-1", "-o", "html")[1].startswith("<!doctype html>")
    code, out, _ = plugin(fake, "backtest", "report", "bt-1", "--out", str(tmp_path / "rep"))
    assert code == 0
    assert out.splitlines()[0].startswith("backtest breakout on AAPL: 300 bars")
    assert json.loads((tmp_path / "rep" / "report.json").read_text()) == REPORT
    assert (tmp_path / "rep" / "report.html").is_file()
    code, _, err = plugin(fake, "backtest", "report", "bt-2")
    assert (code, err.strip()) == (1, "error: backtest bt-2: not found in namespace research")


def test_status_lists_the_backtests(tmp_path):
    fake = FakeJobs(FAILED, "", {"terminated": {"exitCode": 2, "reason": "Error"}})
    code, out, _ = plugin(fake, "backtest", "status", "bt-1")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "STRATEGY", "STATUS", "REASON", "STARTED", "DURATION"]
    assert out.splitlines()[1].split()[:4] == ["bt-1", "breakout", "Failed", "BackoffLimitExceeded"]


def vars_argv(tmp_path: Path) -> list[str]:
    bars = tmp_path / "bars.csv"
    bars.write_text("timestamp,symbol,open,high,low,close,volume\n2026-01-05T14:30:00Z,AAPL,1,1,1,1,10\n")
    return ["backtest", "bt-1", "--bars", str(bars)]
