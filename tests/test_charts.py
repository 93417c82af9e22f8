"""Charts without a browser: matplotlib PNGs for a run's confusion matrix and learning curves
and for Optuna's plots, and one offline HTML page for the interactive ones."""

from __future__ import annotations

import matplotlib
import numpy as np
import optuna
import plotly.graph_objects as go
import pytest

from signlab.data.labels import LETTERS
from signlab.models.evaluate import Evaluation, confusion_chart, learning_curves_chart
from signlab.plots import RememberedImportances, figure_of, pyplot_figures, save_html, save_png

PNG = b"\x89PNG\r\n\x1a\n"


def _evaluation() -> Evaluation:
    confusion = np.diag(np.arange(1, 25))
    confusion[17, 20] = 12  # R read as U
    return Evaluation(0.9, 0.8, 0.85, {}, confusion)


def test_confusion_chart_has_letters_and_counts(tmp_path):
    fig = confusion_chart(_evaluation(), "test split")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LETTERS)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(LETTERS)
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert ((20, 17), "12") in cells and len(cells) == 25, "each non-zero cell, zeros left blank"
    assert "accuracy 0.9000" in ax.get_title()
    path = save_png(fig, tmp_path / "confusion_matrix.png")
    assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("history, drawn", [
    ([{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "learning_rate": 1e-3},
      {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.7, "val_accuracy": 0.7, "learning_rate": 1e-3}],
     [["loss", "val_loss"], ["accuracy", "val_accuracy"]]),
    ([{"loss": 1.0, "accuracy": 0.5}, {"loss": 0.5, "accuracy": 0.8}], [["loss"], ["accuracy"]]),  # a refit
    ([{"val_loss": 0.3, "val_accuracy": 0.9}], [["val_loss"], ["val_accuracy"]]),  # a KNN: one "epoch"
    ([], [[], []]),
])
def test_learning_curves_draw_what_the_history_has(tmp_path, history, drawn):
    fig = learning_curves_chart(history, "cnn learning curves")
    assert [[line.get_label() for line in ax.lines] for ax in fig.axes] == drawn
    assert save_png(fig, tmp_path / "learning_curves.png").read_bytes()[:8] == PNG


def test_one_offline_page_inlines_plotly_once(tmp_path):
    figures = {name: go.Figure(go.Bar(x=["A", "B"], y=[1, i])) for i, name in enumerate(["first", "second"])}
    page = save_html(figures, tmp_path / "plots.html", "two <charts>").read_text()
    assert '<script src="http' not in page
    assert page.count("Plotly.newPlot") == 2 and page.count("plotly.js v") == 1, "plotly.js inlined once"
    assert "<h2>first</h2>" in page and "two &lt;charts&gt;" in page


def test_optuna_matplotlib_plots_leave_pyplot_as_it_was(tmp_path):
    import matplotlib.pyplot as plt

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 1, 4), n_trials=8)
    style, open_before = dict(matplotlib.rcParams), plt.get_fignums()
    with pyplot_figures():
        for plot in (optuna.visualization.matplotlib.plot_optimization_history,
                     optuna.visualization.matplotlib.plot_slice):  # an Axes; an array of them
            with pytest.warns(optuna.exceptions.ExperimentalWarning):
                drawn = plot(study)
            assert save_png(figure_of(drawn), tmp_path / "plot.png").read_bytes()[:8] == PNG
    assert plt.get_fignums() == open_before, "every figure drawn was closed"
    assert dict(matplotlib.rcParams) == style, "Optuna's ggplot style did not leak"


def test_importances_are_computed_once_for_both_drawings():
    calls = []

    class Counting(optuna.importance.FanovaImportanceEvaluator):
        def evaluate(self, study, params=None, *, target=None):
            calls.append(params)
            return super().evaluate(study, params, target=target)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 1, 4), n_trials=8)
    remembered = RememberedImportances(Counting(seed=0))
    first = optuna.importance.get_param_importances(study, evaluator=remembered)
    assert optuna.importance.get_param_importances(study, evaluator=remembered) == first and len(calls) == 1
