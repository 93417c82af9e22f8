"""Evaluation: accuracy, F1, per-class report, confusion matrix, worst confusions, latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator
from sklearn.metrics import classification_report, confusion_matrix

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
    labels: np.ndarray | None = None  # per image: the true label (0-24)
    predicted: np.ndarray | None = None  # per image: the predicted label
    probability: np.ndarray | None = None  # per image: the probability of the predicted label

    @property
    def correct(self) -> np.ndarray:
        """Per image: 1 where the prediction was right, else 0."""
        if self.labels is None or self.predicted is None:
            raise ValueError("this evaluation kept no per-image predictions")
        return (self.labels == self.predicted).astype(np.int8)

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
    """Score `model` on (images, labels), keeping each image's prediction and its probability."""
    proba = model.predict_proba(images)
    predicted = np.asarray(LABELS)[proba.argmax(axis=1)]
    report = classification_report(
        labels, predicted, labels=list(LABELS), target_names=list(LETTERS),
        output_dict=True, zero_division=0,
    )
    return Evaluation(  # the F1 averages as the report computed them (scikit-learn's f1_score gives the same)
        accuracy=float(np.mean(np.asarray(labels) == predicted)),
        f1_macro=float(report["macro avg"]["f1-score"]),
        f1_weighted=float(report["weighted avg"]["f1-score"]),
        report={k: v for k, v in report.items() if isinstance(v, dict)},
        confusion=confusion_matrix(labels, predicted, labels=list(LABELS)),
        labels=np.asarray(labels), predicted=predicted, probability=proba.max(axis=1).astype(np.float32),
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


def confusion_chart(evaluation: Evaluation, title: str) -> Figure:
    """The confusion matrix as a matplotlib figure (for PNG): letters on both axes, counts in
    the cells."""
    z = evaluation.confusion
    n = len(LETTERS)
    # fixed margins: a constrained layout measured every tick label again (half the chart's time)
    fig = Figure(figsize=(8.2, 7.6))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.07, top=0.95)
    ax = fig.add_subplot()
    image = ax.imshow(z, cmap="Blues", vmin=0)
    ax.set_xticks(range(n), labels=list(LETTERS))
    ax.set_yticks(range(n), labels=list(LETTERS))
    ax.set_xlabel("predicted letter")
    ax.set_ylabel("true letter")
    ax.set_title(f"{title}: accuracy {evaluation.accuracy:.4f}, macro F1 {evaluation.f1_macro:.4f}")
    dark = z.max() / 2
    for i, j in zip(*np.nonzero(z), strict=True):
        ax.text(j, i, str(z[i, j]), ha="center", va="center", fontsize=6,
                color="white" if z[i, j] > dark else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def learning_curves_chart(history: list[dict[str, float]], title: str) -> Figure:
    """Loss and accuracy per epoch as a matplotlib figure (for PNG): training solid,
    validation dashed, each drawn only where the history has it (a refit has no validation,
    a KNN no training loss)."""
    fig = Figure(figsize=(10, 4.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.84, wspace=0.2)
    fig.suptitle(title)
    epochs = list(range(1, len(history) + 1))
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            values = np.asarray([h.get(name, np.nan) for h in history], dtype=float)
            if not np.isfinite(values).any():
                continue
            ax.plot(epochs, values, style, marker="o" if len(epochs) < 20 else None, markersize=3, label=name)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(FixedLocator(epochs) if len(epochs) <= 12 else MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=ax.transAxes)
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


