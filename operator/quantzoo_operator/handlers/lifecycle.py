"""Operator startup and cleanup: the one place where kopf's settings are set and the runtime built."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from quantzoo_operator.runtime import Runtime
from quantzoo_operator.settings import OperatorConfig, configure_kopf


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    config = memo.get("config") or OperatorConfig.from_env()
    configure_kopf(settings, config)
    runtime = Runtime.build(config)
    await runtime.start()
    memo["runtime"] = runtime
    logger.info(
        "quantzoo-operator started: namespaces=%s, health and metrics on :%d",
        ",".join(config.namespaces) or "all",
        config.http_port,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()
