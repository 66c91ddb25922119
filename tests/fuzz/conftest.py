"""The fuzz suites' summary line: how many cases each suite sent, over how many operations."""

from __future__ import annotations

from typing import Any

from fuzz_support import MAX_EXAMPLES, SENT, STATUSES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SENT:
        return
    for suite in sorted({s for s, _ in SENT if s != "harness"}):
        ops = {op: n for (s, op), n in SENT.items() if s == suite}
        terminalreporter.write_line(
            f"fuzz {suite}: {sum(ops.values())} cases over {len(ops)} operations "
            f"(QUANTZOO_FUZZ_MAX_EXAMPLES={MAX_EXAMPLES} per operation and auth variant)"
        )
        for op in sorted(ops):
            codes = sorted((code, n) for (s, o, code), n in STATUSES.items() if (s, o) == (suite, op))
            terminalreporter.write_line(f"  {op}: " + " ".join(f"{code}x{n}" for code, n in codes))
