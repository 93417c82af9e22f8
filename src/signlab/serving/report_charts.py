"""The report's charts: test accuracy per model with the spread over seeds, accuracy against
parameters with our Pareto front, and per-letter F1. Accuracies in percent."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from signlab.contract import TEST_ACCURACY
from signlab.data.labels import LETTERS
from signlab.runs.references import load_references, watched_test

if TYPE_CHECKING:
    from signlab.serving.report import Row

OURS, REFIT, TRIAL, PUBLISHED = "#1f6feb", "#2da44e", "#d4761c", "#6e7781"
Point = tuple[int, float, float, str]  # params, accuracy %, std %, model


def _percent(row: Row) -> list[float]:
    return [100 * v for v in row.values(TEST_ACCURACY)]


def _spread(line: str, values: list[float], name: str, color: str, symbol: str) -> list[go.Scatter]:
    """On chart line `line`: the mean of `values` with their std as an error bar, each seed a tick."""
    if not values:
        return []
    mean, sd = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    seeds = f"mean of {len(values)} seeds ± {sd:.2f}" if len(values) > 1 else "one run"
    traces = [go.Scatter(x=[mean], y=[line], mode="markers", name=name, legendgroup=name,
                         marker={"color": color, "size": 12, "symbol": symbol, "line": {"width": 1, "color": "white"}},
                         error_x={"type": "data", "array": [sd], "visible": len(values) > 1, "color": color,
                                  "thickness": 2, "width": 6},
                         hovertemplate=f"%{{y}}: %{{x:.2f}}% ({seeds})<extra>{name}</extra>")]
    if len(values) > 1:
        traces.append(go.Scatter(x=values, y=[line] * len(values), mode="markers", name="single seeds",
                                 legendgroup=name, showlegend=False,
                                 hovertemplate="%{y}, one seed: %{x:.2f}%<extra></extra>",
                                 marker={"color": color, "size": 6, "opacity": 0.6, "symbol": "line-ns-open",
                                         "line": {"width": 2, "color": color}}))
    return traces


def accuracy_chart(ours: list[Row], family: str | None = None) -> go.Figure:
    """Test accuracy per model, one line each: ours as mean ± std over seeds (each seed a tick)
    beside the published figure; a study's chosen trial and its refit share a line."""
    traces: list[go.Scatter] = []
    for row in (r for r in ours if r.kind == "study"):
        line = f"{row.study} (trial {row.trial})"
        traces += _spread(line, _percent(row), "our study's chosen trial", TRIAL, "square")
        if row.refit:
            traces += _spread(line, _percent(row.refit), "our refit, mean ± std", REFIT, "circle")
    reproduced = {row.reference.key: row for row in ours if row.reference is not None}
    for ref in (r for r in load_references() if family is None or r.family == family):
        watched = bool(watched_test(ref))
        name = "published (watched test)" if watched else "published"
        traces.append(go.Scatter(x=[100 * ref.accuracy], y=[ref.model], mode="markers", name=name, legendgroup=name,
                                 marker={"color": PUBLISHED, "size": 11, "line": {"width": 2, "color": PUBLISHED},
                                         "symbol": "diamond-open" if watched else "diamond"},
                                 hovertemplate=f"%{{y}}: %{{x:.2f}}% published<extra>{name}</extra>"))
        if ref.key in reproduced:
            traces += _spread(ref.model, _percent(reproduced[ref.key]), "our reproduction, mean ± std", OURS, "circle")
    lines = len({y for trace in traces for y in trace.y})
    traces.append(go.Scatter(x=[None], y=[None], mode="markers", name="single seeds",  # legend entry only
                             marker={"color": "#444", "symbol": "line-ns-open", "line": {"width": 2}}))
    shown: set[str] = set()
    for trace in traces:  # one legend entry per name
        if trace.showlegend is None:
            trace.showlegend = trace.name not in shown
            shown.add(trace.name)
    fig = go.Figure(traces)
    fig.update_layout(title="Test accuracy per model: ours (mean ± std over seeds, each seed a tick) beside "
                            "the published figures",
                      xaxis_title="test accuracy (%)", yaxis={"autorange": "reversed", "automargin": True},
                      template="plotly_white", height=180 + 30 * lines, legend={"orientation": "h", "y": -0.12},
                      margin={"t": 60})
    return fig


def _point(row: Row) -> Point | None:
    values = _percent(row)
    if not row.params or not values:
        return None
    return row.params, statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, row.model


def params_chart(ours: list[Row], family: str | None = None) -> go.Figure:
    """Accuracy against parameter count (log axis), with the Pareto front of our models;
    refits are starred, with their std over seeds."""
    published = [(r.params, 100 * r.accuracy, 0.0, r.model) for r in load_references()
                 if r.params and (family is None or r.family == family)]
    groups: list[tuple[str, list[Row], str, str]] = [
        ("our reproductions", [r for r in ours if r.kind == "reference"], OURS, "circle"),
        ("our study trials", [r for r in ours if r.kind == "study"], TRIAL, "square"),
        ("our refits (mean ± std)", [r.refit for r in ours if r.refit], REFIT, "star"),
    ]
    fig = go.Figure()
    front_points: list[Point] = []
    for name, pts, color, symbol in [("published", published, PUBLISHED, "diamond")] + [
            (name, [p for p in map(_point, rows) if p], color, symbol) for name, rows, color, symbol in groups]:
        if not pts:
            continue
        front_points += pts if name != "published" else []
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], text=[p[3] for p in pts], mode="markers", name=name,
            marker={"size": 16 if symbol == "star" else 11, "color": color, "symbol": symbol},
            error_y={"type": "data", "array": [p[2] for p in pts], "visible": symbol == "star", "color": color},
            hovertemplate="%{text}: %{y:.2f}% with %{x:,} params<extra></extra>"))
    front, best = [], -1.0
    for params, acc, _, _ in sorted(front_points):  # fewest params first: keep points that raise the accuracy
        if acc > best:
            front.append((params, acc))
            best = acc
    if front:
        fig.add_trace(go.Scatter(x=[p for p, _ in front], y=[a for _, a in front], mode="lines",
                                 line={"shape": "hv", "dash": "dot", "color": "#24292f"}, name="Pareto front (ours)"))
    fig.update_layout(title="Accuracy against parameters (log axis): our Pareto front, refits starred",
                      xaxis_type="log", xaxis_title="parameters (log)", yaxis_title="test accuracy (%)",
                      template="plotly_white", height=520)
    return fig


def f1_chart(report: dict, title: str) -> go.Figure:
    """Per-letter F1 on the test split, from a run's classification_report.json."""
    f1 = [report["test"][letter]["f1-score"] for letter in LETTERS]
    fig = go.Figure(go.Bar(x=list(LETTERS), y=f1, text=[f"{v:.3f}" for v in f1], textposition="outside",
                           textangle=0, cliponaxis=False, marker_color=OURS))
    fig.update_layout(title=f"Per-letter F1 on the test split: {title}", yaxis_range=[0, 1.02],
                      yaxis_title="F1", template="plotly_white", height=420)
    return fig
