"""Historical bars from CSV or Parquet, both with columns timestamp,symbol,open,high,low,close,volume
(the replay feed's format), sorted by time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.feed.replay import REQUIRED_COLUMNS, ReplayError
from quantzoo_engine.feed.replay import load_bars as load_csv


class BarsError(ValueError):
    pass


def _utc(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_parquet(path: Path) -> list[Bar]:
    import pyarrow.parquet as pq  # only when a Parquet file is read

    table = pq.read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise BarsError(f"{path}: missing columns {', '.join(missing)}")
    cols = {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS}
    try:
        bars = [
            Bar(
                symbol=str(sym).strip().upper(),
                timestamp=_utc(ts),
                open=float(o),
                high=float(h),
                low=float(lo),
                close=float(c),
                volume=float(v),
            )
            for ts, sym, o, h, lo, c, v in zip(*(cols[c] for c in REQUIRED_COLUMNS), strict=True)
        ]
    except (TypeError, ValueError) as exc:
        raise BarsError(f"{path}: {exc}") from exc
    bars.sort(key=lambda b: b.timestamp)
    return bars


def load_bars(path: str | Path) -> list[Bar]:
    path = Path(path)
    if not path.is_file():
        raise BarsError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return load_parquet(path)
    try:
        return load_csv(path)
    except ReplayError as exc:
        raise BarsError(str(exc)) from exc
