"""The metrics contract (docs/metrics.md) and the metric names a PromQL expression uses."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


METRICS_DOC = REPO / "docs" / "metrics.md"


# PromQL words that look like identifiers but name no metric.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "le", "atan2",
}  # fmt: skip


_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def documented_metrics() -> dict[str, tuple[str, str]]:
    """{metric name: (service section, type)} from the tables of docs/metrics.md."""
    metrics: dict[str, tuple[str, str]] = {}
    section = ""
    for line in METRICS_DOC.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].split("(")[0].strip().lower()
        match = re.match(r"\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(\w+)\s*\|", line)
        if match:
            metrics[match.group(1)] = (section, match.group(2))
    return metrics


def allowed_series_names(metrics: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Every series name a query may use -> the documented metric it belongs to (histograms expand)."""
    allowed = {}
    for name, (_, kind) in metrics.items():
        allowed[name] = name
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                allowed[name + suffix] = name
    return allowed


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana query) selects.

    Drops string literals, label matchers, ranges, grouping label lists, Grafana variables and function
    names; `label_values(metric, label)` keeps only the metric. Tested in test_alerts_and_dashboards.py
    (test_metric_name_extractor).
    """
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)  # Grafana variables
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', text)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range / subquery windows
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)[^)]*\)", r" \1 ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in _KEYWORDS:
            continue
        names.add(word)
    return names
