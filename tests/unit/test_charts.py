"""The benchmark charts are well-formed SVG that draws what it was given."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ledgerflow.bench.charts import Chart, Series, render

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_draws_each_series_its_limit_and_the_target() -> None:
    chart = Chart(
        "p99 against rate", "offered/s", "ms",
        [Series("ledger", [(5, 40.0), (10, 70.0), (40, 900.0)], limit=35.0),
         Series("ceiling", [(5, 20.0), (10, 30.0)])],
        log_y=True, targets=[(250.0, "target")],
    )  # fmt: skip
    root = ET.fromstring(render(chart))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "p99 against rate" in texts and "target" in texts
    assert "ledger (sustains 35.0/s)" in texts and "ceiling" in texts
    assert len(list(root.iter(f"{SVG}circle"))) == 5  # one per point
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("stroke-dasharray") == "5 4"]
    assert len(dashed) == 1  # the ledger's sustained limit
    paths = [p.get("d") or "" for p in root.iter(f"{SVG}path")]
    assert len(paths) == 2 and paths[0].count("L") == 2


def test_a_higher_value_is_drawn_higher_on_linear_and_log_axes() -> None:
    for log in (False, True):
        svg = render(Chart("t", "x", "y", [Series("s", [(1, 10.0), (2, 1000.0)])],
                           log_x=log, log_y=log))  # fmt: skip
        circles = list(ET.fromstring(svg).iter(f"{SVG}circle"))
        low, high = (float(c.get("cy") or 0) for c in circles)
        assert high < low  # SVG's y grows downwards
        assert float(circles[0].get("cx") or 0) < float(circles[1].get("cx") or 0)


def test_nothing_to_draw_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to draw"):
        render(Chart("empty", "x", "y", [Series("s", [])]))
