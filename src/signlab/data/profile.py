"""`signlab data profile`: class histograms and a sample grid for both splits, as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from signlab.data.dataset import Split
from signlab.data.labels import LABELS, LETTERS
from signlab.files import atomic_path, output_folder, write_text
from signlab.plots import save_png


def class_counts(split: Split) -> dict[str, int]:
    """Images per letter, A-Y."""
    counts = np.bincount(split.labels, minlength=25)
    return {letter: int(counts[label]) for label, letter in zip(LABELS, LETTERS, strict=True)}


def histogram(split: Split) -> Figure:
    """Bar chart of images per letter, each bar labelled with its count, with the min and
    max named in the title."""
    counts = class_counts(split)
    lo, hi = min(counts.values()), max(counts.values())
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(list(counts), list(counts.values()), color="#4c78a8")
    ax.bar_label(bars, fontsize=7)
    ax.set_title(f"{split.name}: {len(split)} images, {lo}-{hi} per class ({split.path.name})")
    ax.set_xlabel("letter")
    ax.set_ylabel("images")
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


def write_profile(train: Split, test: Split, output: Path, per_letter: int = 8) -> list[Path]:
    """Write histograms and sample grids (PNG) and the counts (CSV) into `output`."""
    output_folder(output)
    written: list[Path] = []
    for split in (train, test):
        written.append(save_png(histogram(split), output / f"class_histogram_{split.name}.png"))
        grid = sample_grid(split, per_letter)
        png = output / f"samples_{split.name}.png"
        with atomic_path(png) as tmp:
            Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(tmp)
        written.append(png)
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
