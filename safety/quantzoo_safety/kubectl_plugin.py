"""`kubectl quantzoo`: engage, release and inspect TradingSystem kill switches from a terminal.

    kubectl quantzoo kill    (NAME | --all) [-n NS] --reason R [--operator WHO] [--close-positions]
                             [--mode Halt|ReduceOnly]
    kubectl quantzoo release (NAME | --all) [-n NS] --reason R [--operator WHO]
    kubectl quantzoo kill | release  (--account A [-n NS] | --namespace NS | --firm)  ...
    kubectl quantzoo status  [NAME] [-n NS]
    kubectl quantzoo backtest NAME|status|report ...   (backtest_job/command.py: a backtest as a Job)

The levels above one system (issue #13, quantzoo_safety.levels): `--account A` the TradingAccount's switch,
`--namespace NS` alone (no NAME, no --all) the desk's TradingHalt `desk-NS`, `--firm` the TradingHalt
`firm`; one write stops every system the level covers (the halt is created on first use).

Uses the current kubeconfig (or --kubeconfig/--context) and the same patches as the safety service
(`engage_patch` / `release_patch`), so the one source of truth is `spec.killSwitch` whichever path
is used. An engaged switch keeps its original who/why ("already engaged"); only an escalation
(--close-positions, Halt over ReduceOnly) is added. Errors are printed as the API server words them.

Exit codes: 0 done (including "already engaged"), 1 something was not done (not found, forbidden,
refused, unreachable, nothing to release), 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import io
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from quantzoo_api.killswitch import (
    DEFAULT_OPERATOR,
    DEFAULT_REASON,
    MAX_OPERATOR,
    MAX_REASON,
    KillSource,
    clip,
    normalise_mode,
)
from quantzoo_api.levels import KillLevel
from quantzoo_api.types import KillSwitchMode

from quantzoo_safety import levels
from quantzoo_safety.backtest_job import command as backtest_command
from quantzoo_safety.engagement import EngageIntent, NotEngaged, kill_switch_of, plan_engage, plan_release
from quantzoo_safety.kube import (
    ApiServerUnreachable,
    KubeError,
    KubeRefused,
    TradingSystemNotFound,
    TradingSystems,
    read_build_patch,
)

SOURCE = KillSource.KUBECTL
FIELD_MANAGER = "kubectl-quantzoo"
ALL_PARALLELISM = 16  # --all: systems patched at once (and API connections kept open)


def default_operator() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry (containers), no USER
        return os.environ.get("USER") or "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl quantzoo", description="Kill switch of QuantZoo TradingSystems (spec.killSwitch)."
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{kill,release,status,backtest}")

    def targets(p: argparse.ArgumentParser, *, optional_name: bool = False) -> None:
        p.add_argument("name", nargs="?", metavar="NAME", help="TradingSystem name")
        p.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
        if not optional_name:
            p.add_argument("--all", action="store_true", help="every TradingSystem in the namespace")
            # The levels (issue #13): one write for many systems.
            p.add_argument("--account", default=None, metavar="A", help="the TradingAccount A's switch")
            p.add_argument("--firm", action="store_true", help="the firm's TradingHalt: every system")

    kill = sub.add_parser("kill", help="engage the kill switch")
    targets(kill)
    # An engage is never refused: who and why default, a long reason is shortened, the mode's spelling
    # is normalised (halt, reduce-only ...; anything else is Halt, the stronger).
    kill.add_argument("--reason", default=None, help=f"why (default: {DEFAULT_REASON!r})")
    kill.add_argument("--operator", default=None, help="who (default: the local user)")
    kill.add_argument("--close-positions", action="store_true", help="also flatten every position")
    kill.add_argument(
        "--mode", type=normalise_mode, default=KillSwitchMode.HALT, help="Halt (default) or ReduceOnly"
    )

    release = sub.add_parser("release", help="release the kill switch with a release record (who, why)")
    targets(release)
    release.add_argument("--reason", required=True, help="why it is safe to trade again")
    release.add_argument("--operator", default=None, help="who (default: the local user)")

    status = sub.add_parser("status", help="table of TradingSystems and their kill switches")
    targets(status, optional_name=True)
    backtest_command.add_parser(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(backtest_command.normalise_argv(argv))
    if args.command in {"kill", "release"}:
        args.level = level_of(parser, args)
        if args.level is None and args.all and args.name:
            parser.error("give either NAME or --all, not both")
        if args.level is None and not args.all and not args.name:
            parser.error(
                "give a TradingSystem NAME or --all (or a level: --account A, --namespace NS, --firm)"
            )
        if args.command == "kill":
            args.reason = clip(args.reason, MAX_REASON, DEFAULT_REASON)
            args.operator = clip(args.operator or default_operator(), MAX_OPERATOR, DEFAULT_OPERATOR)
            return args
        if not args.reason.strip():
            parser.error("--reason must not be blank")
        args.operator = (args.operator or default_operator()).strip()
        if not args.operator:
            parser.error("--operator must not be blank")
    return args


def level_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> KillLevel | None:
    """Which level a kill/release is for: None for TradingSystems (NAME or --all)."""
    chosen = [flag for flag, on in (("--account", args.account), ("--firm", args.firm)) if on]
    if len(chosen) > 1 or (chosen and (args.name or args.all)):
        parser.error("give one of NAME, --all, --account A, --namespace NS or --firm")
    if args.firm:
        if args.namespace:
            parser.error("--firm covers every namespace: drop --namespace")
        return KillLevel.FIRM
    if args.account:
        return KillLevel.ACCOUNT
    if args.namespace and not args.name and not args.all:
        return KillLevel.DESK
    return None


def current_namespace(kubeconfig: str | None, context: str | None) -> str:
    from kubernetes import config as k8s_config

    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # no kubeconfig: in-cluster or nothing; "default" like kubectl
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace") or "default"


# ---------------------------------------------------------------------------------------------- status
def _acks(obj: dict[str, Any]) -> str:
    spec_engaged = bool(kill_switch_of(obj).get("engaged"))
    acks = (((obj.get("status") or {}).get("killSwitch") or {}).get("acknowledgements")) or []
    if not acks:
        return "-"
    matching = sum(1 for a in acks if bool(a.get("engaged")) == spec_engaged)
    return f"{matching}/{len(acks)}"


def _short(text: str | None, width: int = 48) -> str:
    text = (text or "-").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def status_rows(objs: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = [["NAME", "MODE", "PHASE", "KILL SWITCH", "REASON", "BY", "ACKS"]]
    for obj in objs:
        ks = kill_switch_of(obj)
        spec = obj.get("spec") or {}
        if ks.get("engaged"):
            switch = f"ENGAGED ({ks.get('mode', 'Halt')}{', close' if ks.get('closePositions') else ''})"
            reason, by = ks.get("reason"), ks.get("operator")
        else:
            release = ks.get("release") or {}
            switch = "released" if release else "off"
            reason, by = release.get("reason"), release.get("operator")
        rows.append(
            [
                obj["metadata"]["name"],
                spec.get("mode", "paper"),
                (obj.get("status") or {}).get("phase") or "-",
                switch,
                _short(reason),
                _short(by, 24),
                _acks(obj),
            ]
        )
    return rows


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# ------------------------------------------------------------------------------------- kill / release
def _patch_with_retry(
    systems: TradingSystems, ns: str, name: str, build: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    return read_build_patch(
        lambda: systems.get(ns, name),
        lambda body, rv: systems.merge_patch(ns, name, body, resource_version=rv),
        build,
    )


def kill_one(systems: TradingSystems, ns: str, name: str, args: argparse.Namespace, out: TextIO) -> None:
    intent = EngageIntent(
        reason=args.reason,
        operator=args.operator,
        source=SOURCE,
        close_positions=args.close_positions,
        mode=normalise_mode(args.mode),
    )
    plans: list[Any] = []

    def build(obj: dict[str, Any]) -> dict[str, Any] | None:
        plans[:] = [plan_engage(kill_switch_of(obj), intent)]
        return plans[0].patch

    obj, _ = _patch_with_retry(systems, ns, name, build)
    plan = plans[0]
    ks = kill_switch_of(obj)
    if not plan.already_engaged:
        extra = ", closing positions" if args.close_positions else ""
        mode = ks.get("mode", args.mode)
        print(f"tradingsystem {ns}/{name}: kill switch ENGAGED ({mode}{extra})", file=out)
    else:
        print(
            f"tradingsystem {ns}/{name}: already engaged by {ks.get('operator') or '?'} "
            f"({ks.get('reason') or 'no reason'}); who/why unchanged",
            file=out,
        )
        if plan.escalations:
            print(f"tradingsystem {ns}/{name}: escalated {', '.join(plan.escalations)}", file=out)


def release_one(systems: TradingSystems, ns: str, name: str, args: argparse.Namespace, out: TextIO) -> None:
    def build(obj: dict[str, Any]) -> dict[str, Any]:
        return plan_release(kill_switch_of(obj), operator=args.operator, reason=args.reason)

    _patch_with_retry(systems, ns, name, build)
    print(f"tradingsystem {ns}/{name}: kill switch released by {args.operator} ({args.reason})", file=out)


def _explain(exc: KubeError, ns: str, name: str | None) -> str:
    what = f"tradingsystem {ns}/{name}" if name else f"namespace {ns}"
    if isinstance(exc, TradingSystemNotFound):
        return f'error: tradingsystems.trading.quantzoo.io "{name}" not found in namespace {ns}'
    if isinstance(exc, KubeRefused):
        if exc.status in (401, 403):
            return f"error: forbidden ({what}): {exc.message}"
        return f"error: the API server refused the change to {what}: {exc.message}"
    if isinstance(exc, ApiServerUnreachable):
        return (
            f"error: {exc}\n"
            "hint: the safety service halts the engine without the API server: "
            "POST /kill-switch/activate on port 8888 (see docs/RUNBOOK.md)"
        )
    return f"error: {exc}"


def run(args: argparse.Namespace, systems: TradingSystems, ns: str, out: TextIO, err: TextIO) -> int:
    if args.command == "status":
        try:
            objs = [systems.get(ns, args.name)] if args.name else systems.list(ns)
        except KubeError as exc:
            print(_explain(exc, ns, args.name), file=err)
            return 1
        if not objs:
            print(f"No TradingSystems found in namespace {ns}.", file=out)
            return 0
        print(format_table(status_rows(objs)), file=out)
        return 0

    try:
        names = [o["metadata"]["name"] for o in systems.list(ns)] if args.all else [args.name]
    except KubeError as exc:
        print(_explain(exc, ns, None), file=err)
        return 1
    if not names:
        print(f"No TradingSystems found in namespace {ns}.", file=out)
        return 0
    if len(names) == 1:
        return _act(args, systems, ns, names[0], out, err)
    # --all: every system at once (a kill-all of a hundred systems must not take a hundred round trips
    # in a row); each system's lines are printed together, in name order.
    with ThreadPoolExecutor(min(ALL_PARALLELISM, len(names)), thread_name_prefix="kubectl-quantzoo") as pool:
        runs = [(io.StringIO(), io.StringIO()) for _ in names]
        codes = list(pool.map(lambda n, r: _act(args, systems, ns, n, r[0], r[1]), names, runs))
    for buf_out, buf_err in runs:
        out.write(buf_out.getvalue())
        err.write(buf_err.getvalue())
    return 1 if any(codes) else 0


def _act(
    args: argparse.Namespace, systems: TradingSystems, ns: str, name: str, out: TextIO, err: TextIO
) -> int:
    """Kill or release one TradingSystem: 0 done, 1 not done (the reason printed to `err`)."""
    try:
        if args.command == "kill":
            kill_one(systems, ns, name, args, out)
        else:
            release_one(systems, ns, name, args, out)
    except NotEngaged:
        print(f"tradingsystem {ns}/{name}: kill switch is not engaged; nothing to release", file=err)
        return 0 if args.all else 1
    except KubeError as exc:
        print(_explain(exc, ns, name), file=err)
        return 1
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    systems: TradingSystems | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = parse_args(argv)
    ns = args.namespace or current_namespace(args.kubeconfig, args.context)
    if args.command == "backtest":
        return backtest_command.main(args, ns, out, err)
    if getattr(args, "level", None) is not None:
        return _level(args, ns, out, err)
    if systems is None:
        from quantzoo_safety.kube import api_client_from_environment

        try:
            api_client = api_client_from_environment(args.kubeconfig, args.context, pool_size=ALL_PARALLELISM)
        except ApiServerUnreachable as exc:
            print(f"error: {exc}", file=err)
            return 1
        systems = TradingSystems(api_client, request_timeout=10, field_manager=FIELD_MANAGER)
    return run(args, systems, ns, out, err)


def _level(args: argparse.Namespace, ns: str, out: TextIO, err: TextIO) -> int:
    from quantzoo_safety.kube import api_client_from_environment

    try:
        api_client = api_client_from_environment(args.kubeconfig, args.context)
    except ApiServerUnreachable as exc:
        print(f"error: {exc}", file=err)
        return 1
    objects = levels.LevelObjects(api_client, request_timeout=10, field_manager=FIELD_MANAGER)
    target = {
        KillLevel.FIRM: lambda: levels.LevelTarget.firm(),
        KillLevel.DESK: lambda: levels.LevelTarget.desk(ns),
        KillLevel.ACCOUNT: lambda: levels.LevelTarget.account(ns, args.account),
    }[args.level]()
    intent = EngageIntent(
        reason=args.reason,
        operator=args.operator,
        source=SOURCE,
        close_positions=getattr(args, "close_positions", False),
        mode=normalise_mode(getattr(args, "mode", KillSwitchMode.HALT)),
    )
    return levels.act(objects, target, args.command, intent, out, err)


if __name__ == "__main__":
    sys.exit(main())
