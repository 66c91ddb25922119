"""`python -m quantzoo_engine` / `quantzoo-engine`: serve the engine on 0.0.0.0:8001.

Runs on embedded defaults (simulated feed, paper broker, AAPL and MSFT) with no credentials and no
network; see settings.py for the environment it reads. Exit code: 0 after a clean shutdown, 1 if the
shutdown missed something (a cancel failed, the state could not be written), 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from quantzoo_api.logs import configure_json_logging

from quantzoo_engine.app import create_app
from quantzoo_engine.runtime import EngineRuntime
from quantzoo_engine.settings import ConfigError, EngineSettings


class EngineServer(uvicorn.Server):
    """uvicorn, with the kill switch's rule for SIGTERM: new orders stop in the signal handler itself."""

    def __init__(self, config: uvicorn.Config, on_terminate: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_terminate = on_terminate

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_terminate()
        # uvicorn would re-raise the signal after shutting down (exit status 143); a pod that shut down
        # cleanly on SIGTERM exits 0 instead, and 1 when something was left undone.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quantzoo-engine", description="QuantZoo trading engine")
    parser.add_argument("--host", default=None, help="listen address (env ENGINE_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None, help="listen port (env ENGINE_PORT, default 8001)")
    parser.add_argument("--config", default=None, help="config file (env QUANTZOO_CONFIG)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = EngineSettings.from_env(host=args.host, port=args.port, config_path=args.config)
        configure_json_logging("engine", settings.namespace, settings.name, settings.log_level)
        app = create_app(settings)
    except ConfigError as exc:
        print(f"quantzoo-engine: configuration error: {exc}", file=sys.stderr)
        return 2
    runtime: EngineRuntime = app.state.runtime
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        # Connections get a quarter of the shutdown budget to drain; the rest is for cancelling and
        # persisting, which already started when the signal arrived.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_deadline_seconds / 4)),
    )
    EngineServer(config, on_terminate=runtime.request_terminate).run()
    return runtime.exit_code


if __name__ == "__main__":
    sys.exit(main())
