"""`quantzoo`: the command line a quant uses (`quantzoo backtest ...`, `quantzoo strategies`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantzoo", description="QuantZoo command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("strategies", help="list the strategies installed (entry-point group quantzoo.strategies)")
    args = parser.parse_args(argv)
    if args.command == "strategies":
        from quantzoo_engine.sdk import registry

        for name, ep in sorted(registry.available().items()):
            print(f"{name}\t{ep.value}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
