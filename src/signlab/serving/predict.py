"""`signlab predict`: letters for images (PNG/JPEG, any size) or data-set CSV rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signlab.data.labels import LETTERS
from signlab.models.classifier import PayloadError, as_images
from signlab.models.pyfunc import PIXEL_COLUMNS, pixels_of

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def read_image(path: Path) -> np.ndarray:
    """A picture as a 28x28 uint8 grayscale image (resized, as the data set's images were)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gray = img.convert("L")
            if gray.size != (28, 28):
                gray = gray.resize((28, 28), Image.Resampling.LANCZOS)
            return np.asarray(gray, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise PayloadError(f"{path}: image too large to read ({str(exc).split(',')[0]}); expected a picture "
                           "of one hand, a few thousand pixels a side at most") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PayloadError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """Rows of a CSV: with a header, columns pixel1..pixel784 (and an optional `label`) matched
    by name; without one (the first line all numbers), 784 pixels per row by position."""
    try:
        frame = pd.read_csv(path)
        headerless = all(_is_number(str(name)) for name in frame.columns)
        if headerless:
            frame = pd.read_csv(path, header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise PayloadError(f"{path}: not a readable CSV ({exc})") from None
    try:
        pixels = pixels_of(frame)
    except PayloadError as exc:
        raise PayloadError(f"{path}: {exc}") from None
    first = 1 if headerless else 2  # the file's line number of the first row
    try:
        images = as_images(pixels)
    except PayloadError as exc:
        raise PayloadError(f"{path}: {exc} (image 0 is line {first})") from None
    return [f"{path.name}:row{i + first}" for i in range(len(images))], images


def gather(inputs: list[Path]) -> tuple[list[str], np.ndarray]:
    """Names and images for files given on the command line."""
    names: list[str] = []
    batches: list[np.ndarray] = []
    for path in inputs:
        if not path.is_file():
            raise PayloadError(f"{path}: no such file")
        if path.suffix.lower() in {".csv", ".gz"}:
            row_names, images = read_csv_rows(path)
            names += row_names
            batches.append(images)
        else:
            names.append(str(path))
            batches.append(read_image(path)[None])
    if not batches:
        raise PayloadError("no input files given")
    return names, np.concatenate(batches)


def predict(model_uri: str, inputs: list[Path], top: int = 3) -> list[dict]:
    """One result per image: name, letter, probability and the `top` letters."""
    import mlflow.pyfunc

    names, images = gather(inputs)
    return predict_images(mlflow.pyfunc.load_model(model_uri), names, images, top)


def predict_images(model: Any, names: list[str], images: np.ndarray, top: int = 3) -> list[dict]:
    """`predict` for images already read, with a loaded pyfunc model."""
    frame = pd.DataFrame(images.reshape(len(images), -1).astype(np.float64), columns=PIXEL_COLUMNS)
    out = model.predict(frame)
    probs = out[[f"prob_{c}" for c in LETTERS]].to_numpy()
    results = []
    for name, row, p in zip(names, out.itertuples(index=False), probs, strict=True):
        order = np.argsort(p)[::-1][:top]
        results.append({"input": name, "letter": row.letter, "probability": float(row.probability),
                        "top": [{"letter": LETTERS[i], "probability": float(p[i])} for i in order]})
    return results
