"""Load, validate and cache the Sign Language MNIST CSVs (plain or .gz).

Every problem in a file gets one error naming the file, the row (spreadsheet numbering:
the header is row 1, the first image row 2), the column and what was expected. Nothing is
cached from a bad file; a good file is parsed once and cached by its SHA-256.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from signlab import config
from signlab.data.labels import LABELS, MISSING_LABELS
from signlab.errors import UserError

SplitName = Literal["train", "test"]
N_PIXELS = 784
HEADER = ["label"] + [f"pixel{i}" for i in range(1, N_PIXELS + 1)]
CACHE_FORMAT = "v1"
_INT = re.compile(r"^[+-]?\d+$")


class DataFileError(UserError, ValueError):
    """A data file that cannot be used, with where and what."""

    def __init__(self, path: Path, problem: str, row: int | None = None, column: str | None = None):
        self.path, self.problem, self.row, self.column = Path(path), problem, row, column
        where = "".join(
            [f", row {row}" if row is not None else "", f", column '{column}'" if column else ""]
        )
        super().__init__(f"{self.path}{where}: {problem}")


class DataFileNotFound(UserError, FileNotFoundError):
    """A split's CSV is in none of the places we look."""


class ModifiedDataWarning(UserWarning):
    """A data file's SHA-256 is not that of the original Kaggle file."""


@dataclass(frozen=True)
class Split:
    """One split of the data set: uint8 images (N, 28, 28) and int64 labels (N,)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    path: Path
    sha256: str
    verified: bool

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DataFiles:
    """Both files of the data set, loaded: what trainings, studies and refits take from their
    caller (the CLI reads them from the data dir; a test or a notebook may build them)."""

    train: Split
    test: Split


def load_files(data_dir: str | os.PathLike[str] | None = None) -> DataFiles:
    """The training and test files from the data dir (`load_split`, checked)."""
    return DataFiles(load_split("train", data_dir), load_split("test", data_dir))


def in_memory_split(name: str, images: np.ndarray, labels: np.ndarray) -> Split:
    """A split from arrays already in memory (uint8 images N x 28 x 28, labels 0-24): its
    SHA-256 is that of its bytes, so cached groups of variants stay per content."""
    images, labels = np.ascontiguousarray(images, dtype=np.uint8), np.ascontiguousarray(labels, dtype=np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{name}: expected images (N, 28, 28) and N labels, got {images.shape} and {labels.shape}")
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    return Split(name, images, labels, Path(f"memory/{name}"), digest, False)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_split_file(split: SplitName, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The CSV of a split in the data dir: `<name>.csv`, else `<name>.csv.gz`."""
    if split not in config.SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = config.data_dir(data_dir)
    name = config.SPLIT_FILES[split]
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataFileNotFound(
        f"{name} not found in {folder.resolve()} (looked for {name} and {name}.gz). "
        f"Get the data with `signlab data fetch --data-dir {folder}`, or point --data-dir "
        f"(or ${config.DATA_DIR_ENV}) at a folder holding the Kaggle CSVs."
    )


def load_split(
    split: SplitName,
    data_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
) -> Split:
    """Load the train or test split from the data dir (see `config.data_dir`)."""
    return load_csv(find_split_file(split, data_dir), name=split, cache=cache)


def load_csv(path: str | os.PathLike[str], name: str | None = None, cache: bool = True) -> Split:
    """Load and validate one data-set CSV; use the cached parse when the file is unchanged."""
    path = Path(path)
    name = name or path.name.split(".")[0]
    if not path.is_file():
        raise DataFileNotFound(f"{path}: no such file")
    sha = sha256_file(path)
    cached = _cache_path(sha)
    if cache and cached.is_file():
        try:
            with np.load(cached) as npz:
                images, labels, verified = npz["images"], npz["labels"], bool(npz["verified"])
            _warn_if_modified(path, verified)
            return Split(name, images, labels, path, sha, verified)
        except (OSError, KeyError, ValueError):
            cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt below
    images, labels = _parse(path)
    verified = is_verified(path, sha=sha)
    _warn_if_modified(path, verified)
    if cache:
        _write_cache(cached, images, labels, verified)
    return Split(name, images, labels, path, sha, verified)


def _cache_path(sha: str) -> Path:
    return config.cache_dir() / f"{CACHE_FORMAT}-{sha}.npz"


def _write_cache(target: Path, images: np.ndarray, labels: np.ndarray, verified: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, images=images, labels=labels, verified=np.bool_(verified))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def is_verified(path: Path, name: str | None = None, sha: str | None = None) -> bool:
    """Whether `path` (or, for .gz, its content) has the SHA-256 of the original file `name`
    (default: the file's own name). `sha`: the file's SHA-256, if already known."""
    name = name or path.name
    if (sha or sha256_file(path)) in config.KNOWN_SHA256.get(name, set()):
        return True
    if name.endswith(".gz"):
        digest = hashlib.sha256()
        try:
            with gzip.open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except (OSError, EOFError, zlib.error):  # not gzip, or cut short
            return False
        return digest.hexdigest() in config.KNOWN_SHA256.get(name[:-3], set())
    return False


def _warn_if_modified(path: Path, verified: bool) -> None:
    if not verified:
        warnings.warn(
            f"{path}: SHA-256 differs from the original Kaggle file; using it anyway",
            ModifiedDataWarning,
            stacklevel=3,
        )


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fast vectorised parse; on anything unexpected, a row-by-row scan names the problem."""
    try:
        frame = pd.read_csv(path, engine="c", skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataFileError(path, "the file is empty (expected a header and image rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError):
        _diagnose(path)
        raise DataFileError(path, "not a readable CSV file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFileError(path, f"cannot be read: {exc}") from None
    while len(frame) and frame.iloc[-1].isna().all():  # trailing blank lines are harmless
        frame = frame.iloc[:-1]
    if list(frame.columns) != HEADER or any(k.kind not in "iu" for k in frame.dtypes):
        _diagnose(path)
        raise DataFileError(path, "values could not be read as integers")
    if frame.empty:
        raise DataFileError(path, "has a header but no image rows", row=2)
    values = frame.to_numpy()
    _check_ranges(path, values)
    return values[:, 1:].astype(np.uint8).reshape(-1, 28, 28), values[:, 0].astype(np.int64)


def _check_ranges(path: Path, values: np.ndarray) -> None:
    labels, pixels = values[:, 0], values[:, 1:]
    bad_label = ~np.isin(labels, LABELS)
    if bad_label.any():
        i = int(np.argmax(bad_label))
        raise DataFileError(path, _label_problem(int(labels[i])), row=i + 2, column="label")
    bad_pixel = (pixels < 0) | (pixels > 255)
    if bad_pixel.any():
        i, j = np.unravel_index(int(np.argmax(bad_pixel)), bad_pixel.shape)
        raise DataFileError(
            path,
            f"pixel value {int(pixels[i, j])} is outside 0-255",
            row=int(i) + 2,
            column=HEADER[j + 1],
        )


def _label_problem(label: int) -> str:
    if label in MISSING_LABELS:
        letter = "J" if label == 9 else "Z"
        return f"label {label} ({letter}) does not occur in Sign Language MNIST (labels 0-24, not 9)"
    return f"label {label} is outside 0-24 (labels 0-24, not 9)"


def _diagnose(path: Path) -> None:
    """Scan row by row and raise a DataFileError for the first problem found."""
    try:
        with _open_text(path) as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFileError(path, f"not a readable UTF-8 CSV file ({exc})") from None
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise DataFileError(path, "the file is empty (expected a header and image rows)")
    header = [cell.strip() for cell in rows[0]]
    if len(header) != len(HEADER):
        raise DataFileError(
            path, f"header has {len(header)} columns, expected {len(HEADER)} (label, pixel1..pixel784)", row=1
        )
    for col, (got, want) in enumerate(zip(header, HEADER, strict=True), start=1):
        if got != want:
            raise DataFileError(path, f"header column {col} is {got!r}, expected {want!r}", row=1)
    if len(rows) == 1:
        raise DataFileError(path, "has a header but no image rows", row=2)
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            what = "is empty" if not any(c.strip() for c in row) else f"has {len(row)} columns"
            raise DataFileError(path, f"row {what}, expected {len(HEADER)} columns", row=number)
        for column, cell in zip(HEADER, row, strict=True):
            text = cell.strip()
            if not text:
                raise DataFileError(path, "missing value (expected an integer)", number, column)
            if not _INT.match(text):
                raise DataFileError(path, f"{text!r} is not an integer", number, column)
            value = int(text)
            if column == "label" and value not in LABELS:
                raise DataFileError(path, _label_problem(value), number, column)
            if column != "label" and not 0 <= value <= 255:
                raise DataFileError(path, f"pixel value {value} is outside 0-255", number, column)
