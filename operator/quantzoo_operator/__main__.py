"""`quantzoo-operator`: run the operator.

    quantzoo-operator [--namespace NS ...] [--all-namespaces] [--standalone]
                      [--liveness-port 8080] [--log-level info]

--namespace NS     watch NS (repeat, or comma-separate, for several); default: every namespace
--all-namespaces   watch every namespace (explicitly)
--standalone       no kopf peering: this is the only operator replica
--liveness-port    port of /healthz and /metrics (env QUANTZOO_OPERATOR_PORT; default 8080)
--log-level        debug, info, warning, error (env QUANTZOO_OPERATOR_LOG_LEVEL / LOG_LEVEL)
Every other setting comes from the environment (settings.py lists them). Logs are JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import sys

from quantzoo_operator import logs
from quantzoo_operator.settings import ConfigError, OperatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="quantzoo-operator", description="Reconcile TradingSystems and propagate their kill switch."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS", help="namespace to watch"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--standalone", action="store_true", help="no peering (a single operator replica)")
    parser.add_argument(
        "--liveness-port", type=int, default=None, metavar="PORT", help="/healthz and /metrics port"
    )
    parser.add_argument("--log-level", default=None, metavar="LEVEL")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> OperatorConfig:
    config = OperatorConfig.from_env()
    changes: dict[str, object] = {}
    namespaces = tuple(ns.strip() for item in args.namespace for ns in item.split(",") if ns.strip())
    if namespaces:
        changes["namespaces"] = namespaces
    if args.all_namespaces:
        changes["namespaces"] = ()
    if args.standalone:
        changes["standalone"] = True
    if args.liveness_port is not None:
        changes["http_port"] = args.liveness_port
    if args.log_level:
        changes["log_level"] = args.log_level.upper()
    return config.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from(args)
    except ConfigError as exc:
        print(f"quantzoo-operator: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level)

    import kopf

    import quantzoo_operator.main  # noqa: F401 - registers the handlers

    kopf.run(
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
        standalone=True if config.standalone else None,
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
