"""Charts as files that open anywhere: PNG drawn by matplotlib (no browser, no network), and
interactive plotly figures gathered in one self-contained HTML page (plotly.js inlined once).

Our own charts use matplotlib's object API (`matplotlib.figure.Figure`), which renders PNG
with Agg and touches no pyplot state. Optuna's matplotlib plots go through pyplot and set the
global "ggplot" style: `pyplot_figures` draws them on Agg inside an `rc_context` (their style
does not outlive it) and closes every figure made inside it.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import plotly.graph_objects as go
from matplotlib.figure import Figure
from optuna.importance import BaseImportanceEvaluator
from optuna.trial import FrozenTrial

from signlab.files import atomic_path


def save_png(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """Write `fig` as the PNG `path` (atomically); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def save_html(figures: dict[str, go.Figure], path: Path, title: str) -> Path:
    """One page holding `figures` under their names, plotly.js inlined once (about 4.6 MB
    in all, however many figures): it opens offline, in MLflow's artifact view too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<h2>{html.escape(name)}</h2>\n" + fig.to_html(full_html=False, include_plotlyjs=(i == 0))
             for i, (name, fig) in enumerate(figures.items())]
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
            f"<body style=\"font-family: sans-serif\">\n<h1>{html.escape(title)}</h1>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


class RememberedImportances(BaseImportanceEvaluator):
    """`inner`'s importances, computed once for both drawings of one study's plots (fANOVA
    takes 20 s on 500 trials). One instance per study, objective and set of trials."""

    def __init__(self, inner: BaseImportanceEvaluator) -> None:
        self.inner = inner
        self.found: dict[tuple[str, ...] | None, dict[str, float]] = {}

    def evaluate(self, study: optuna.Study, params: list[str] | None = None, *,
                 target: Callable[[FrozenTrial], float] | None = None) -> dict[str, float]:
        key = None if params is None else tuple(params)
        if key not in self.found:
            self.found[key] = self.inner.evaluate(study, params, target=target)
        return dict(self.found[key])


def figure_of(drawn: Any) -> Figure:
    """The figure behind what a plotting function returned: an Axes or an array of them."""
    first = drawn.flat[0] if hasattr(drawn, "flat") else drawn
    return first.figure


@contextmanager
def pyplot_figures() -> Iterator[None]:
    """Draw with pyplot (Optuna's matplotlib plots) on Agg, leaving pyplot's style and open
    figures as they were."""
    if "matplotlib.pyplot" not in sys.modules:  # else the caller chose its backend (a notebook, say)
        matplotlib.use("Agg")  # never a GUI backend for files (a desktop's default may be TkAgg)
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        with matplotlib.rc_context():
            yield
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
