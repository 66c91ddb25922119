"""The broker's Retry-After (RFC 9110 §10.2.3), as seconds to wait: Alpaca sends it with a 429. A value
that is not a number of seconds (the HTTP-date form, garbage) is no instruction, so None."""

from __future__ import annotations

# A broker asking for more than this is capped: the kill path's retries must go on while engaged.
MAX_RETRY_AFTER_SECONDS = 60.0


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)
