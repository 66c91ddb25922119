"""dryRun mode: orders are recorded and logged, never sent anywhere.

Fills are simulated in process (like the paper broker) so the strategy, P&L and risk checks behave as
they would; with a real broker configured, its account and positions are read once at start
(read-only) so the dry run begins from the real book.
"""

from __future__ import annotations

import logging

from quantzoo_engine.broker.base import Broker
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import Clock
from quantzoo_engine.orders import Order, OrderRequest

log = logging.getLogger(__name__)


class DryRunBroker(PaperBroker):
    name = "dry_run"

    def __init__(
        self, initial_cash: float = 1_000_000.0, clock: Clock | None = None, seed_from: Broker | None = None
    ) -> None:
        super().__init__(initial_cash=initial_cash, clock=clock)
        self._seed_from = seed_from
        self.recorded: list[OrderRequest] = []

    async def connect(self) -> None:
        if self._seed_from is None:
            return
        # Reads only: a dry run never submits, cancels or closes anything at the real broker.
        await self._seed_from.connect()
        account = await self._seed_from.account()
        positions = await self._seed_from.positions()
        self.ledger.reconcile(
            account.cash, positions, start_of_day_equity=account.last_equity or account.equity
        )

    def execute(self, request: OrderRequest) -> Order:
        self.recorded.append(request)
        log.info(
            "dry-run order recorded, not sent",
            extra={
                "symbol": request.symbol,
                "side": str(request.side),
                "quantity": request.quantity,
                "client_order_id": request.client_order_id,
            },
        )
        return super().execute(request)

    async def close(self) -> None:
        if self._seed_from is not None:
            await self._seed_from.close()
