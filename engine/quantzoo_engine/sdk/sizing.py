"""Sizing inside the risk limits, shared by strategies that go long and short."""

from __future__ import annotations

import math

from quantzoo_api.types import RiskLimits


def reversal_size(wanted: int, price: float, limits: RiskLimits) -> int:
    """The largest quantity <= `wanted` such that a full reversal (2 x size) stays within
    maxOrderNotional and maxOrderQuantity, and one side's position within maxPositionNotional."""
    if price <= 0:
        return 0
    return max(
        0,
        min(
            wanted,
            math.floor(limits.max_order_notional / (2 * price)),
            limits.max_order_quantity // 2,
            math.floor(limits.max_position_notional / price),
        ),
    )
