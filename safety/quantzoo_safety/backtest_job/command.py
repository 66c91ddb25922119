"""`kubectl quantzoo backtest`: run `quantzoo backtest` on the cluster as a Job, follow it, fetch its report.

    kubectl quantzoo backtest NAME --strategy S [--params JSON] [--symbols A,B] --bars FILE|image:/PATH
                              [--image IMG] [--wait] [-n NS] ...
    kubectl quantzoo backtest status [NAME] [--wait] [-n NS]
    kubectl quantzoo backtest report NAME [-o json|html] [--out DIR] [-n NS]

Bad input is refused before anything is created (exit 2): the bars are read and the strategy's
parameters validated here when the strategy is installed here (always for our own image). Exit 1: the
backtest failed or is not there, with the reason and the tail of its log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from quantzoo_safety.backtest_job import manifests, outcome
from quantzoo_safety.backtest_job.manifests import BacktestJobRequest, BarsFile, BarsInImage, BarsTooLarge

ACTIONS = ("run", "status", "report")
POLL_SECONDS = 1.0
NAME_RULE = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 58"
FLAGS = {"ttl_seconds": "--ttl", "deadline_seconds": "--deadline"}
IMAGE_ENV = "QUANTZOO_BACKTEST_IMAGE"  # the default of --image, when set (ours of this version otherwise)
RBAC_HINT = "the rights a user needs are in docs/STRATEGIES.md, 'Backtest on the cluster'"


class BacktestError(Exception):
    """A message for the user (never a traceback); `code` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------- arguments
def normalise_argv(argv: Sequence[str] | None) -> list[str]:
    """`backtest NAME ...` is `backtest run NAME ...` (so `status` and `report` cannot be Job names)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, word in enumerate(args):
        if word == "backtest" and (i == 0 or args[i - 1] not in ("--kubeconfig", "--context")):
            if i + 1 < len(args) and args[i + 1] not in (*ACTIONS, "-h", "--help"):
                args.insert(i + 1, "run")
            break
    return args


def add_parser(sub: Any) -> None:
    bt = sub.add_parser("backtest", help="run a backtest on the cluster as a Job and fetch its report")
    actions = bt.add_subparsers(dest="backtest_action", required=True, metavar="{NAME,status,report}")

    def common(p: argparse.ArgumentParser, *, name: str) -> None:
        p.add_argument("name", metavar="NAME", nargs="?" if name == "optional" else None, help="backtest")
        p.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")

    run = actions.add_parser("run", help="create the Job (`backtest NAME ...` for short)")
    common(run, name="required")
    run.add_argument(
        "--strategy", required=True, help="strategy name (entry-point group quantzoo.strategies)"
    )
    run.add_argument("--params", default="{}", help="strategy parameters as a JSON object (camelCase keys)")
    run.add_argument("--symbols", default="", help="comma-separated; default: every symbol in the bars")
    run.add_argument(
        "--bars",
        required=True,
        help="a local CSV/Parquet file (handed in by a ConfigMap, at most 1 MiB) or image:/PATH in the image",
    )
    run.add_argument("--initial-cash", type=float, default=None)
    run.add_argument(
        "--image", default=None, help=f"ours by default (or ${IMAGE_ENV}); or yours, built FROM ours"
    )
    run.add_argument("--image-pull-policy", choices=["Always", "IfNotPresent", "Never"], default=None)
    run.add_argument("--cpu", default="1", help="CPU limit (default 1)")
    run.add_argument("--memory", default="1Gi", help="memory request and limit (default 1Gi)")
    run.add_argument(
        "--deadline",
        type=int,
        default=manifests.DEFAULT_DEADLINE_SECONDS,
        help="seconds the Job may run (activeDeadlineSeconds)",
    )
    run.add_argument(
        "--ttl",
        type=int,
        default=manifests.DEFAULT_TTL_SECONDS,
        help="seconds the Job, its pod (and so its report) and its bars are kept after it finishes",
    )
    run.add_argument("--wait", action="store_true", help="wait until it finishes and print its summary")

    status = actions.add_parser("status", help="where a backtest is (all of the namespace's without NAME)")
    common(status, name="optional")
    status.add_argument("--wait", action="store_true", help="wait until NAME finishes")
    status.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")

    report = actions.add_parser("report", help="the report of a finished backtest")
    common(report, name="required")
    report.add_argument("-o", "--output", choices=["json", "html"], default="json", help="printed format")
    report.add_argument("--out", default=None, help="write report.json and report.html into this directory")


# --------------------------------------------------------------------------------------- pre-flight
def _our_image() -> str:
    try:
        return manifests.default_image(version("quantzoo"))
    except PackageNotFoundError:  # a source checkout without an install
        return manifests.default_image("latest")


def _bars(value: str) -> BarsFile | BarsInImage:
    if value.startswith("image:"):
        path = value.removeprefix("image:")
        if not path.startswith("/"):
            raise BacktestError(
                f"error: --bars: {path!r} in the image must be absolute (image:/data/b.csv)", 2
            )
        return BarsInImage(path=path)
    from quantzoo_engine.backtest.bars import BarsError, load_bars

    path = Path(value)
    try:
        bars = BarsFile(filename=path.name, data=path.read_bytes())
        manifests.check_bars_size(bars)
        load_bars(path)  # a file the Job could not read is refused here, before anything is created
    except (OSError, BarsTooLarge, BarsError) as exc:
        raise BacktestError(f"error: --bars: {exc}", 2) from None
    return bars


def _check_strategy(name: str, params: dict[str, Any], custom_image: bool) -> None:
    """The strategy's own validation, here, when it is installed here (the plugin ships with the engine,
    so our image's strategies always are); a strategy only a custom image carries is checked by the Job."""
    from quantzoo_engine.sdk import registry

    if name not in registry.available() and custom_image:
        return
    try:
        registry.validate_params(name, params)
    except registry.StrategyConfigError as exc:
        raise BacktestError(f"error: {exc}", 2) from None


def request_from_args(args: argparse.Namespace, namespace: str) -> BacktestJobRequest:
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        raise BacktestError(f"error: --params is not JSON: {exc}", 2) from None
    if not isinstance(params, dict):
        raise BacktestError("error: --params must be a JSON object, e.g. '{\"window\": 30}'", 2)
    bars = _bars(args.bars)
    _check_strategy(args.strategy, params, custom_image=args.image is not None)
    try:
        return BacktestJobRequest(
            name=args.name,
            namespace=namespace,
            image=args.image or os.environ.get(IMAGE_ENV) or _our_image(),
            image_pull_policy=args.image_pull_policy,
            strategy=args.strategy,
            params=params,
            symbols=[s.strip().upper() for s in args.symbols.split(",") if s.strip()],
            initial_cash=args.initial_cash,
            bars=bars,
            cpu=args.cpu,
            memory=args.memory,
            deadline_seconds=args.deadline,
            ttl_seconds=args.ttl,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field == "name":
            raise BacktestError(f"error: NAME {args.name!r}: {NAME_RULE}", 2) from None
        flag = FLAGS.get(field, "--" + field.replace("_", "-"))
        raise BacktestError(f"error: {flag}: {first['msg']}", 2) from None


# ---------------------------------------------------------------------------------------- API access
class BacktestJobs:
    """The plugin's Kubernetes calls for backtests; errors come out as BacktestError with the API
    server's own wording."""

    def __init__(self, api_client: Any, namespace: str, *, request_timeout: float = 15) -> None:
        from kubernetes import client as k8s

        self._client = api_client
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self.namespace = namespace
        self._timeout = request_timeout

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        from quantzoo_safety.kube import api_message, translate

        try:
            return fn(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise BacktestError(f"error: {what}: not found in namespace {self.namespace}") from None
            if exc.status == 403:
                raise BacktestError(
                    f"error: forbidden ({what}): {api_message(exc)}\nhint: {RBAC_HINT}"
                ) from None
            if exc.status and 400 <= exc.status < 500:
                raise BacktestError(f"error: {what}: {api_message(exc)}") from None
            raise BacktestError(f"error: {translate(exc, what)}") from None
        except Exception as exc:
            raise BacktestError(f"error: {translate(exc, what)}") from None

    def _dict(self, obj: Any) -> dict[str, Any]:
        return self._client.sanitize_for_serialization(obj)

    def create(self, req: BacktestJobRequest) -> dict[str, Any]:
        """The Job, then (bars by file) its ConfigMap and the resume; a half-made backtest is deleted."""
        ns, name = self.namespace, req.name
        job = self._dict(
            self._call(f"create job {name}", self._batch.create_namespaced_job, ns, manifests.build_job(req))
        )
        if isinstance(req.bars, BarsFile):
            try:
                cm = manifests.build_bars_configmap(req, job["metadata"]["uid"])
                self._call(
                    f"create configmap {cm['metadata']['name']}",
                    self._core.create_namespaced_config_map,
                    ns,
                    cm,
                )
                job = self._dict(
                    self._call(
                        f"resume job {name}",
                        self._batch.patch_namespaced_job,
                        name,
                        ns,
                        {"spec": {"suspend": False}},
                    )
                )
            except BacktestError:
                self.delete(name)
                raise
        return job

    def delete(self, name: str) -> None:
        from kubernetes import client as k8s

        with contextlib.suppress(BacktestError):  # the ConfigMap goes with it (owner reference)
            self._call(
                f"delete job {name}",
                self._batch.delete_namespaced_job,
                name,
                self.namespace,
                body=k8s.V1DeleteOptions(propagation_policy="Background"),
            )

    def job(self, name: str) -> dict[str, Any]:
        return self._dict(
            self._call(f"backtest {name}", self._batch.read_namespaced_job, name, self.namespace)
        )

    def jobs(self) -> list[dict[str, Any]]:
        found = self._call(
            "list backtests",
            self._batch.list_namespaced_job,
            self.namespace,
            label_selector=f"{manifests.LABEL_APP}={manifests.APP}",
        )
        return sorted((self._dict(j) for j in found.items), key=lambda j: j["metadata"]["name"])

    def pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in job["spec"]["selector"]["matchLabels"].items())
        found = self._call(
            f"list pods of {job['metadata']['name']}",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
        )
        return [self._dict(p) for p in found.items]

    def log(self, pod: dict[str, Any]) -> str:
        # Raw bytes: the client would otherwise try to parse a log that looks like JSON.
        resp = self._call(
            f"log of pod {pod['metadata']['name']}",
            self._core.read_namespaced_pod_log,
            pod["metadata"]["name"],
            self.namespace,
            container=manifests.CONTAINER,
            _preload_content=False,
        )
        return resp.data.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------ actions
def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def _failure(jobs: BacktestJobs, status: outcome.BacktestStatus, pods: list[dict[str, Any]]) -> str:
    lines = [f"error: backtest {jobs.namespace}/{status.name} failed: {status.reason}: {status.message}"]
    pod = _newest(pods)
    tail = ""
    if pod is not None:
        try:
            tail = outcome.log_tail(jobs.log(pod))
        except BacktestError:  # the pod's log is gone: the kubelet's copy in its status is kept
            tail = outcome.termination_message(pods)
    if tail:
        lines += ["last lines of its log:", tail]
    return "\n".join(lines)


def wait_finished(jobs: BacktestJobs, name: str, timeout: float | None) -> outcome.BacktestStatus:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = jobs.job(name)
        status = outcome.status_of(job, jobs.pods(job))
        if status.finished:
            return status
        if status.unstartable:  # else the wait would last until the Job's deadline
            raise BacktestError(
                f"error: backtest {jobs.namespace}/{name} cannot start: {status.reason}: {status.message}\n"
                f"hint: delete it (kubectl delete job {name} -n {jobs.namespace}) and run it again"
            )
        if deadline is not None and time.monotonic() > deadline:
            detail = (
                f" ({status.reason}{': ' + status.message if status.message else ''})"
                if status.reason
                else ""
            )
            raise BacktestError(
                f"error: backtest {jobs.namespace}/{name} still {status.phase}{detail} after {timeout:.0f}s"
            )
        time.sleep(POLL_SECONDS)


def _report(jobs: BacktestJobs, name: str) -> dict[str, Any]:
    job = jobs.job(name)
    pods = jobs.pods(job)
    status = outcome.status_of(job, pods)
    if status.phase is outcome.Phase.FAILED:
        raise BacktestError(_failure(jobs, status, pods))
    if not status.finished:
        raise BacktestError(
            f"error: backtest {jobs.namespace}/{name} has not finished ({status.phase}); "
            f"wait for it: kubectl quantzoo backtest status {name} --wait"
        )
    pod = _newest(pods)
    report = outcome.report_from_log(jobs.log(pod)) if pod else None
    if report is None:
        raise BacktestError(
            f"error: backtest {jobs.namespace}/{name} succeeded but its pod's log holds no report "
            "(the pod was deleted, or the image's `quantzoo` does not know --report-stdout)"
        )
    return report


def _finished(jobs: BacktestJobs, status: outcome.BacktestStatus, out: TextIO) -> None:
    if status.phase is outcome.Phase.FAILED:
        job = jobs.job(status.name)
        raise BacktestError(_failure(jobs, status, jobs.pods(job)))
    report = _report(jobs, status.name)
    print(outcome.summary_line(report), file=out)
    print(f"report: kubectl quantzoo backtest report {status.name} -n {jobs.namespace} [--out DIR]", file=out)


def run_action(
    args: argparse.Namespace, req: BacktestJobRequest | None, jobs: BacktestJobs, out: TextIO
) -> None:
    if req is not None:
        jobs.create(req)
        print(
            f"backtest {jobs.namespace}/{req.name} created (job.batch/{req.name}, strategy {req.strategy}, "
            f"image {req.image}; kept {req.ttl_seconds}s after it finishes)",
            file=out,
        )
        if args.wait:
            # The Job's own deadline bounds the run; a pod that cannot start (image not found) does too.
            _finished(jobs, wait_finished(jobs, req.name, req.deadline_seconds + 60), out)
        return
    if args.backtest_action == "status":
        if args.name and args.wait:
            _finished(jobs, wait_finished(jobs, args.name, args.timeout), out)
            return
        job_list = [jobs.job(args.name)] if args.name else jobs.jobs()
        if not job_list:
            print(f"No backtests found in namespace {jobs.namespace}.", file=out)
            return
        from quantzoo_safety.kubectl_plugin import format_table

        statuses = [outcome.status_of(j, jobs.pods(j)) for j in job_list]
        print(format_table(outcome.status_rows(statuses)), file=out)
        for s in statuses:
            if s.phase is outcome.Phase.FAILED or s.message:
                print(f"{s.name}: {s.reason}: {s.message}", file=out)
        return
    report = _report(jobs, args.name)
    from quantzoo_engine.backtest.report import render_html

    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "report.html").write_text(render_html(report))
        print(outcome.summary_line(report), file=out)
        print(f"report: {out_dir / 'report.html'} and {out_dir / 'report.json'}", file=out)
    elif args.output == "html":
        out.write(render_html(report))
    else:
        print(json.dumps(report, indent=2), file=out)


def main(
    args: argparse.Namespace, namespace: str, out: TextIO, err: TextIO, jobs: BacktestJobs | None = None
) -> int:
    try:
        # Bad input is refused before the API server is even asked.
        req = request_from_args(args, namespace) if args.backtest_action == "run" else None
        if jobs is None:
            from quantzoo_safety.kube import ApiServerUnreachable, api_client_from_environment

            try:
                jobs = BacktestJobs(api_client_from_environment(args.kubeconfig, args.context), namespace)
            except ApiServerUnreachable as exc:
                raise BacktestError(f"error: {exc}") from None
        run_action(args, req, jobs, out)
    except BacktestError as exc:
        print(str(exc), file=err)
        return exc.code
    except OSError as exc:  # --out not writable
        print(f"error: {exc}", file=err)
        return 1
    return 0
