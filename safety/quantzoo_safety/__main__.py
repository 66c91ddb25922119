"""`python -m quantzoo_safety` / `quantzoo-safety`: serve the safety service (default 0.0.0.0:8888).

    quantzoo-safety [--host H] [--port P]      (env SAFETY_PORT; --port wins)

Everything else comes from the environment; see settings.py.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from quantzoo_api.logs import configure_json_logging

from quantzoo_safety.app import create_app
from quantzoo_safety.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantzoo-safety", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="bind address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None, help="port (default $SAFETY_PORT or 8888)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except (SettingsError, OSError) as exc:
        print(f"quantzoo-safety: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_json_logging("safety", settings.namespace, settings.name)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,  # every API call is in the audit log already, with more detail
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
