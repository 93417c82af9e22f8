"""`signlab predict`: letters for images (PNG/JPEG, any size) or data-set CSV rows (plain or
.gz), streamed: CSVs are read and predicted CSV_CHUNK rows at a time and each result is given
out as soon as its chunk is done, so memory stays flat however long the file.

Before a model is loaded its MLmodel is checked (`check_classifier`): only a signlab classifier
whose loading runs signlab's installed code and nothing from the store is loaded, unless the
user says `--trust-model`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signlab.data.labels import LETTERS
from signlab.errors import UserError
from signlab.models.classifier import PayloadError, as_images

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
CSV_CHUNK = 4096  # rows read and predicted at once: ~25 MB of pixels as int64
IMAGE_CHUNK = 256  # pictures predicted at once


# ---- which files can be read -------------------------------------------------------------
def input_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an input file, in a few true words; None when it can."""
    try:
        mode = path.stat().st_mode  # follows links
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (the link leads back to itself)"
        if exc.errno == errno.ENOENT and path.is_symlink():
            return f"a broken symlink (to {os.readlink(path)}, which does not exist)"
        if exc.errno == errno.ENOENT:
            return "no such file"
        if exc.errno == errno.EACCES:
            return "permission denied (a folder on its path cannot be opened)"
        if exc.errno == errno.ENOTDIR:
            return "no such file (part of its path is a file, not a folder)"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return "a directory, not a file (give the files in it, e.g. DIR/*.png)"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device)"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "not readable (permission denied)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None


def check_inputs(inputs: list[Path]) -> None:
    """One line for the first input that cannot be read."""
    if not inputs:
        raise PayloadError("no input files given")
    for path in inputs:
        if problem := input_problem(path):
            raise PayloadError(f"{path}: {problem}")


# ---- reading ---------------------------------------------------------------------------------
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


CSV_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError, ValueError)


def csv_chunks(path: Path, chunk: int = CSV_CHUNK) -> Iterator[tuple[list[str], np.ndarray]]:
    """Names and images of a CSV's rows, `chunk` rows at a time: with a header, columns
    pixel1..pixel784 (and an optional `label`) matched by name; without one (the first line
    all numbers), 784 pixels per row by position. Plain or gzip (by the `.gz` suffix)."""
    from signlab.models.pyfunc import pixels_of

    try:
        header = pd.read_csv(path, nrows=0).columns  # the first line only
        headerless = all(_is_number(str(name)) for name in header)
        reader = pd.read_csv(path, header=None if headerless else "infer", chunksize=chunk)
    except CSV_ERRORS as exc:
        raise PayloadError(f"{path}: not a readable CSV ({str(exc)[:200]})") from None
    line = 1 if headerless else 2  # the file's line number of the next row
    with reader:
        while True:
            try:
                frame = next(reader)
            except StopIteration:
                break
            except CSV_ERRORS as exc:
                raise PayloadError(f"{path}: not a readable CSV after line {line - 1} ({str(exc)[:200]})") from None
            try:
                images = as_images(pixels_of(frame))
            except PayloadError as exc:  # "image 3: ..." of this chunk: the file's line instead
                found = re.match(r"image (\d+): ", str(exc))
                where = f"line {line + int(found[1])}: {str(exc)[found.end():]}" if found else f"{exc} (line {line} on)"
                raise PayloadError(f"{path}: {where}") from None
            yield [f"{path.name}:row{line + i}" for i in range(len(images))], images
            line += len(images)
    if line == (1 if headerless else 2):
        raise PayloadError(f"{path}: no rows")


def batches(inputs: list[Path]) -> Iterator[tuple[list[str], np.ndarray]]:
    """Names and images for the files given, a chunk at a time, in order."""
    names: list[str] = []
    images: list[np.ndarray] = []
    for path in inputs:
        if path.suffix.lower() in {".csv", ".gz"}:
            if images:
                yield names, np.stack(images)
                names, images = [], []
            yield from csv_chunks(path)
        else:
            names.append(str(path))
            images.append(read_image(path))
            if len(images) == IMAGE_CHUNK:
                yield names, np.stack(images)
                names, images = [], []
    if images:
        yield names, np.stack(images)


# ---- the model -----------------------------------------------------------------------------
REFUSAL = ("model {uri} is not a signlab classifier that loads as data: {problem}; it was not loaded. "
           "--trust-model loads it anyway, which runs its code: only for a model you trust")


def check_classifier(model_uri: str, local: Path | None = None) -> None:
    """Refuse, in one line, a model whose loading could run code from the store: read its
    MLmodel (and an old model's pickle, without running it) from `local`, a downloaded copy,
    or else from the store (the MLmodel alone, for a model of today's form)."""
    import mlflow
    from mlflow.models import Model

    from signlab.models.pyfunc import LEGACY_PICKLE, classifier_problem, pickle_problem

    meta = Model.load(str(local) if local else model_uri)  # the MLmodel file only
    problem = classifier_problem(meta.flavors)
    if problem is None and meta.flavors["python_function"].get("python_model") == LEGACY_PICKLE:
        with tempfile.TemporaryDirectory() as tmp:  # an old model: its folder, never loaded here
            folder = local or Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
            problem = pickle_problem(folder / LEGACY_PICKLE)
    if problem:
        raise UserError(REFUSAL.format(uri=model_uri, problem=problem))


def load_classifier(model_uri: str, trust_model: bool = False) -> Any:
    """The pyfunc model at `model_uri`, loaded only if `check_classifier` clears it (or the
    user trusts it). What is loaded is the copy that was checked, not a second download."""
    import mlflow.pyfunc

    if trust_model:
        return mlflow.pyfunc.load_model(model_uri)
    check_classifier(model_uri)  # a refusal downloads nothing but the MLmodel (and a pickle)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        check_classifier(model_uri, local)
        return mlflow.pyfunc.load_model(str(local))  # read whole: the folder can go


def predict(model_uri: str, inputs: list[Path], top: int = 3, trust_model: bool = False) -> Iterator[dict]:
    """Predict the letter of each image, as results are ready. Inputs are checked, and the
    first chunk read, before the model is loaded; errors in later rows of a CSV come when the
    stream reaches them.

    Args:
        model_uri: a `models:/` or `runs:/` URI of a letters classifier.
        inputs: image files (PNG, JPEG...) and CSV files of 784-pixel rows (plain or .gz).
        top: how many of the most probable letters each result lists.
        trust_model: load a model whose loading could run code from the store.

    Yields:
        Per image: its name, letter, probability and the `top` letters with theirs.
    """
    check_inputs(inputs)
    chunks = batches(inputs)
    first = next(chunks, None)
    if first is None:
        raise PayloadError("no images in the files given")
    model = load_classifier(model_uri, trust_model)

    def results() -> Iterator[dict]:
        yield from predict_images(model, *first, top)
        for names, images in chunks:
            yield from predict_images(model, names, images, top)

    return results()


def predict_images(model: Any, names: list[str], images: np.ndarray, top: int = 3) -> list[dict]:
    """`predict` for images already read, with a loaded pyfunc model."""
    from signlab.models.pyfunc import PIXEL_COLUMNS

    frame = pd.DataFrame(images.reshape(len(images), -1).astype(np.float64), columns=PIXEL_COLUMNS)
    out = model.predict(frame)
    probs = out[[f"prob_{c}" for c in LETTERS]].to_numpy()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [{"input": name, "letter": letter, "probability": float(p),
             "top": [{"letter": LETTERS[i], "probability": float(row[i])} for i in best]}
            for name, letter, p, row, best in zip(names, out["letter"], out["probability"], probs, order, strict=True)]
