"""A scripted market for the monitoring test on real pods: replay bars (the engine's replay feed,
`timestamp,symbol,open,high,low,close,volume`) in which AAPL holds still, then falls, then the file ends
(the feed goes quiet: stale data). MSFT has one missing bar and one outlier print, so the data-quality
panels have something to show. Pure: builds the CSV text.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
BAR = timedelta(minutes=1)  # the file's bar spacing: what a missing bar means (replay infers it)
AAPL_START = 190.0
MSFT = 410.0
MSFT_MISSING_STEP = 3
MSFT_OUTLIER_STEP = 6
MSFT_OUTLIER = 600.0  # +46%: far beyond the 5% outlier bound, and alone (no confirmed jump)


def falling_market(flat_steps: int, fall_steps: int, fall_pct: float, tail_steps: int = 5) -> str:
    """CSV text: `flat_steps` steps at the start price, a linear fall of `fall_pct` percent over
    `fall_steps` steps (each step under the outlier bound), `tail_steps` at the bottom, then the end."""
    bottom = AAPL_START * (1 - fall_pct / 100)
    step_pct = 100 * (AAPL_START - bottom) / fall_steps / bottom
    if step_pct >= 5:
        raise ValueError(f"a {step_pct:.1f}% step would be refused as an outlier; use more fall_steps")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
    total = flat_steps + fall_steps + tail_steps
    for step in range(total):
        at = (START + step * BAR).isoformat()
        into_fall = min(max(step - flat_steps + 1, 0), fall_steps)
        aapl = round(AAPL_START - (AAPL_START - bottom) * into_fall / fall_steps, 4)
        writer.writerow([at, "AAPL", aapl, aapl, aapl, aapl, 1000])
        if step == MSFT_MISSING_STEP:
            continue
        msft = MSFT_OUTLIER if step == MSFT_OUTLIER_STEP else MSFT
        writer.writerow([at, "MSFT", msft, msft, msft, msft, 1000])
    return out.getvalue()
