"""Evaluation: accuracy, F1, per-class report, confusion matrix, worst confusions, latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from signlab.contract import LATENCY_MS
from signlab.data.labels import LABELS, LETTERS
from signlab.models.classifier import LetterModel


@dataclass
class Evaluation:
    """How a model did on one labelled set of images."""

    accuracy: float
    f1_macro: float
    f1_weighted: float
    report: dict[str, dict[str, float]]
    confusion: np.ndarray  # rows: true letter, columns: predicted letter (LETTERS order)

    def metrics(self, prefix: str) -> dict[str, float]:
        """The headline numbers as MLflow metrics, e.g. test_accuracy, test_f1_macro."""
        return {f"{prefix}_accuracy": self.accuracy, f"{prefix}_f1_macro": self.f1_macro,
                f"{prefix}_f1_weighted": self.f1_weighted}

    def worst_confusions(self, n: int = 5) -> list[str]:
        """The `n` largest off-diagonal cells, e.g. 'R read as U: 12 of 144'."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(off, axis=None)[::-1][:n]
        lines = []
        for flat in order:
            i, j = np.unravel_index(flat, off.shape)
            if off[i, j] == 0:
                break
            lines.append(f"{LETTERS[i]} read as {LETTERS[j]}: {off[i, j]} of {self.confusion[i].sum()}")
        return lines

    def report_text(self) -> str:
        """A plain-text per-letter precision/recall/F1 table."""
        rows = [f"{'letter':>6} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>7}"]
        for letter in LETTERS:
            r = self.report[letter]
            rows.append(f"{letter:>6} {r['precision']:9.4f} {r['recall']:7.4f} {r['f1-score']:7.4f} {int(r['support']):7d}")
        rows.append(f"\naccuracy {self.accuracy:.4f}  macro F1 {self.f1_macro:.4f}  weighted F1 {self.f1_weighted:.4f}")
        return "\n".join(rows)


def evaluate(model: LetterModel, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Score `model` on (images, labels)."""
    predicted = model.predict_labels(images)
    report = classification_report(
        labels, predicted, labels=list(LABELS), target_names=list(LETTERS),
        output_dict=True, zero_division=0,
    )
    return Evaluation(
        accuracy=float(accuracy_score(labels, predicted)),
        f1_macro=float(f1_score(labels, predicted, labels=list(LABELS), average="macro", zero_division=0)),
        f1_weighted=float(f1_score(labels, predicted, labels=list(LABELS), average="weighted", zero_division=0)),
        report={k: v for k, v in report.items() if isinstance(v, dict)},
        confusion=confusion_matrix(labels, predicted, labels=list(LABELS)),
    )


def confusion_figure(evaluation: Evaluation, title: str) -> go.Figure:
    """A plotly heatmap of the confusion matrix, letters on both axes."""
    z = evaluation.confusion
    fig = go.Figure(go.Heatmap(
        z=z, x=list(LETTERS), y=list(LETTERS), colorscale="Blues",
        text=np.where(z > 0, z, "").astype(str), texttemplate="%{text}",
        hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
    ))
    fig.update_layout(
        title=f"{title}: accuracy {evaluation.accuracy:.4f}, macro F1 {evaluation.f1_macro:.4f}",
        xaxis_title="predicted letter", yaxis_title="true letter", width=820, height=780,
        yaxis_autorange="reversed", template="plotly_white",
    )
    return fig


def learning_curves_figure(history: list[dict[str, float]], title: str) -> go.Figure:
    """Loss and accuracy per epoch, training and validation."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    epochs = list(range(1, len(history) + 1))
    for col, key in ((1, "loss"), (2, "accuracy")):
        for name, dash in ((key, None), (f"val_{key}", "dash")):
            fig.add_trace(go.Scatter(x=epochs, y=[h.get(name) for h in history], name=name,
                                     line={"dash": dash}), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, template="plotly_white", width=1000, height=420)
    return fig


def latency(model: LetterModel, images: np.ndarray, repeats: int = 30) -> dict[str, float]:
    """Seconds to predict all `images`, and the median ms for one image on a warm model."""
    model.predict_proba(images[:1])  # warm up: graph tracing, first-call allocation
    start = time.perf_counter()
    model.predict_proba(images)
    whole = time.perf_counter() - start
    single = []
    for i in range(repeats):
        one = images[i % len(images)][None]
        start = time.perf_counter()
        model.predict_proba(one)
        single.append(time.perf_counter() - start)
    return {"predict_seconds": whole, LATENCY_MS: 1000 * statistics.median(single)}


