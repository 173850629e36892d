"""Chart axes: whole counts get whole-number gridlines; money keeps its decimals."""

from __future__ import annotations

import re
from datetime import date, timedelta

from quotas import charts


def _tick_labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" font-size="11" fill="#666">([^<]+)<', svg)


def test_small_whole_counts_have_whole_ticks():
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(3)]
    for top in (1, 2, 3, 5, 10, 13):
        svg = charts.bar_chart(title="Requests", labels=["a", "b", "c"], series={"n": [0, top, 1]})
        labels = _tick_labels(svg)
        assert labels and all(label.isdigit() for label in labels), (top, labels)
        line = charts.line_chart(title="Tokens", days=days, series={"m": [0, top, 1]})
        assert all(label.isdigit() for label in _tick_labels(line)), top


def test_costs_keep_their_decimals():
    svg = charts.bar_chart(
        title="Cost", labels=["a", "b"], series={"usd": [0.001, 0.003]}, whole=False
    )
    labels = _tick_labels(svg)
    assert labels[-1] == "0.004" and "0.001" in labels
