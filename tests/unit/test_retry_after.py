"""The broker's Retry-After header as seconds to wait (engine/quantzoo_engine/broker/retry_after.py)."""

from __future__ import annotations

import pytest
from quantzoo_engine.broker.retry_after import MAX_RETRY_AFTER_SECONDS, retry_after_seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("86400", MAX_RETRY_AFTER_SECONDS),  # capped: the kill path's retries go on while engaged
        (None, None),
        ("", None),
        ("-1", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # the HTTP-date form is no number of seconds
    ],
)
def test_retry_after_is_seconds_or_nothing(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds
