"""Where orders go: the in-process paper broker (default), Alpaca, and dry-run (records, never sends)."""

from quantzoo_engine.broker.base import (
    AccountExposure,
    AccountSnapshot,
    Broker,
    BrokerError,
    BrokerRejected,
    BrokerThrottled,
    BrokerTimeout,
    CancelReport,
    FlattenReport,
)
from quantzoo_engine.broker.dry_run import DryRunBroker
from quantzoo_engine.broker.paper import PaperBroker

__all__ = [
    "AccountExposure",
    "AccountSnapshot",
    "Broker",
    "BrokerError",
    "BrokerRejected",
    "BrokerThrottled",
    "BrokerTimeout",
    "CancelReport",
    "DryRunBroker",
    "FlattenReport",
    "PaperBroker",
]
