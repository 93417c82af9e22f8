"""`signlab data profile`: class histograms and a sample grid for both splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from signlab.data.dataset import Split
from signlab.data.labels import LABELS, LETTERS
from signlab.files import atomic_path, output_folder, write_text
from signlab.plots import save_figure


def class_counts(split: Split) -> dict[str, int]:
    """Images per letter, A-Y."""
    counts = np.bincount(split.labels, minlength=25)
    return {letter: int(counts[label]) for label, letter in zip(LABELS, LETTERS, strict=True)}


def histogram(split: Split) -> go.Figure:
    """Bar chart of images per letter, with the min and max named in the title."""
    counts = class_counts(split)
    lo, hi = min(counts.values()), max(counts.values())
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), text=list(counts.values())))
    fig.update_layout(
        title=f"{split.name}: {len(split)} images, {lo}-{hi} per class ({split.path.name})",
        xaxis_title="letter",
        yaxis_title="images",
        template="plotly_white",
    )
    return fig


def sample_grid(split: Split, per_letter: int = 8, seed: int = 0) -> np.ndarray:
    """A uint8 mosaic: one row per letter, `per_letter` random images of it side by side."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in LABELS:
        idx = np.flatnonzero(split.labels == label)
        pick = rng.choice(idx, size=min(per_letter, len(idx)), replace=False)
        tiles = [split.images[i] for i in pick] + [np.zeros((28, 28), np.uint8)] * (
            per_letter - len(pick)
        )
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def sample_figure(grid: np.ndarray, per_letter: int) -> go.Figure:
    """The sample mosaic as a plotly figure with letters on the y axis."""
    fig = make_subplots(rows=1, cols=1)
    fig.add_trace(go.Heatmap(z=grid[::-1], colorscale="gray", showscale=False))
    fig.update_yaxes(
        tickvals=[28 * i + 14 for i in range(len(LETTERS))], ticktext=list(LETTERS)[::-1]
    )
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(
        title=f"{per_letter} random samples per letter",
        width=120 + 28 * per_letter * 3,
        height=28 * len(LETTERS) * 2 + 100,
        template="plotly_white",
    )
    return fig


def write_profile(train: Split, test: Split, output: Path, per_letter: int = 8) -> list[Path]:
    """Write histograms (HTML/PNG) and sample grids (HTML/PNG) into `output`."""
    output_folder(output)
    written: list[Path] = []
    for split in (train, test):
        written += save_figure(histogram(split), output / f"class_histogram_{split.name}")
        grid = sample_grid(split, per_letter)
        png = output / f"samples_{split.name}.png"
        with atomic_path(png) as tmp:
            Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(tmp)
        written.append(png)
        written += save_figure(sample_figure(grid, per_letter), output / f"samples_{split.name}", png=False)
    summary = output / "class_counts.csv"
    lines = ["letter,train,test"] + [
        f"{letter},{a},{b}"
        for letter, a, b in zip(
            LETTERS, class_counts(train).values(), class_counts(test).values(), strict=True
        )
    ]
    write_text(summary, "\n".join(lines) + "\n")
    written.append(summary)
    return written
