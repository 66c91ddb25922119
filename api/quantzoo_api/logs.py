"""Structured JSON logging shared by the three services; every line names the TradingSystem."""

from __future__ import annotations

import logging
import os

from pythonjsonlogger.json import JsonFormatter


class _TradingSystemFilter(logging.Filter):
    """Stamps namespace/name on records that do not carry them already."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__()
        self.namespace, self.name_ = namespace, name

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "namespace", None):
            record.namespace = self.namespace
        if not getattr(record, "name_", None) and not getattr(record, "tradingsystem", None):
            record.tradingsystem = self.name_
        return True


def configure_json_logging(
    component: str, namespace: str = "", name: str = "", level: str | None = None
) -> None:
    """Route the root logger to stdout as JSON lines with component, namespace and tradingsystem."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            static_fields={"component": component},
        )
    )
    handler.addFilter(_TradingSystemFilter(namespace, name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
