"""JSON logs: every line kopf writes about an object carries its namespace and name.

kopf's object loggers attach `k8s_ref` (kind, name, namespace, uid) to each record; this filter turns it
into the same `namespace` / `tradingsystem` fields the engine and the safety service log
(quantzoo_api.logs), so one query finds everything about one TradingSystem.
"""

from __future__ import annotations

import logging
import re

from quantzoo_api.logs import configure_json_logging

# Attributes kopf attaches to its records for its own Event poster; not JSON material.
_KOPF_ATTRIBUTES = ("k8s_ref", "k8s_skip", "settings")


class KopfObjectFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ref = getattr(record, "k8s_ref", None)
        for attribute in _KOPF_ATTRIBUTES:
            record.__dict__.pop(attribute, None)
        if isinstance(ref, dict):
            if ref.get("namespace"):
                record.namespace = ref["namespace"]
            if ref.get("kind") == "TradingSystem":
                record.tradingsystem = ref.get("name")
            else:
                record.object = f"{ref.get('kind')}/{ref.get('name')}"
        return True


# kopf says "Handler '<id>' succeeded." after every handler run. For the raw event handlers (a child's
# event, the kill-switch nudge) that is one line per watch event and says nothing: a creation burst of
# 300 systems wrote 7,000 of them. Their failures are still logged.
_EVENT_HANDLER_SUCCESS = re.compile(r"Handler '(child-[a-z]+|kill-switch-nudge)' succeeded\.")


class QuietEventHandlerSuccess(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and _EVENT_HANDLER_SUCCESS.fullmatch(record.msg) is not None
        )


def configure(level: str = "INFO") -> None:
    configure_json_logging("operator", level=level.upper())
    root = logging.getLogger()
    for handler in root.handlers:
        handler.filters.insert(0, KopfObjectFilter())
    # On the logger, before any handler formats the record.
    logging.getLogger("kopf.objects").addFilter(QuietEventHandlerSuccess())
    # Quiet the per-request chatter of the clients underneath.
    for noisy in ("kubernetes.client.rest", "urllib3", "httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
