"""The data layer on the real data set (marked slow), and one clear error per kind of bad
file (written here in the Kaggle files' format, no data needed)."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from signlab import config
from signlab.data.dataset import (
    DataFileError,
    DataFileNotFound,
    ModifiedDataWarning,
    find_split_file,
    load_csv,
    load_split,
)
from signlab.data.labels import LETTERS, decode, encode, label_to_letter, letter_to_label
from signlab.data.splits import normalise, scale, stratified_subset, validation_split

# Per-class counts from ../shared/data/sign_mnist/README.md (letter: train, test).
COUNTS = {
    "A": (1126, 331), "B": (1010, 432), "C": (1144, 310), "D": (1196, 245), "E": (957, 498),
    "F": (1204, 247), "G": (1090, 348), "H": (1013, 436), "I": (1162, 288), "K": (1114, 331),
    "L": (1241, 209), "M": (1055, 394), "N": (1151, 291), "O": (1196, 246), "P": (1088, 347),
    "Q": (1279, 164), "R": (1294, 144), "S": (1199, 246), "T": (1186, 248), "U": (1161, 266),
    "V": (1082, 346), "W": (1225, 206), "X": (1164, 267), "Y": (1118, 332),
}


@pytest.mark.slow
def test_real_data_shapes_and_counts(train_split, test_split):
    assert train_split.images.shape == (27455, 28, 28) and train_split.images.dtype == np.uint8
    assert test_split.images.shape == (7172, 28, 28) and test_split.images.dtype == np.uint8
    assert train_split.verified and test_split.verified
    for split, column in ((train_split, 0), (test_split, 1)):
        assert len(np.unique(split.labels)) == 24
        counts = {label_to_letter(k): int(v) for k, v in zip(*np.unique(split.labels, return_counts=True), strict=False)}
        assert counts == {letter: pair[column] for letter, pair in COUNTS.items()}


@pytest.mark.slow
def test_cached_load_matches_parse(train_split, tmp_path, monkeypatch):
    cache = Path(config.cache_dir())
    assert (cache / f"v1-{train_split.sha256}.npz").is_file()
    again = load_split("train")
    np.testing.assert_array_equal(again.images, train_split.images)
    np.testing.assert_array_equal(again.labels, train_split.labels)
    # a damaged cache entry is rebuilt, not trusted
    (cache / f"v1-{train_split.sha256}.npz").write_bytes(b"not an npz")
    rebuilt = load_split("train")
    np.testing.assert_array_equal(rebuilt.labels, train_split.labels)


def test_letters_round_trip():
    assert len(LETTERS) == 24 and "J" not in LETTERS and "Z" not in LETTERS
    assert label_to_letter(0) == "A" and label_to_letter(24) == "Y"
    assert letter_to_label("y") == 24
    labels = np.array([0, 8, 10, 24])
    assert decode(encode(labels)).tolist() == labels.tolist()
    assert encode(labels).tolist() == [0, 8, 9, 23]
    assert encode(labels, 25).tolist() == labels.tolist()
    for bad in (9, 25, -1):
        with pytest.raises(ValueError, match="not a Sign Language MNIST class"):
            label_to_letter(bad)
    with pytest.raises(ValueError, match="J"):
        letter_to_label("J")


@pytest.mark.slow
def test_validation_split_is_stratified(train_split):
    (x_tr, y_tr), (x_val, y_val) = validation_split(train_split.images, train_split.labels, 0.2, seed=3)
    assert len(y_tr) + len(y_val) == len(train_split)
    assert abs(len(y_val) / len(train_split) - 0.2) < 0.001
    share = np.bincount(y_val, minlength=25) / np.maximum(np.bincount(train_split.labels, minlength=25), 1)
    assert np.all(np.abs(share[np.bincount(train_split.labels, minlength=25) > 0] - 0.2) < 0.01)
    again = validation_split(train_split.images, train_split.labels, 0.2, seed=3)[1][1]
    np.testing.assert_array_equal(again, y_val)
    with pytest.raises(ValueError, match="between 0 and 1"):
        validation_split(train_split.images, train_split.labels, 1.5)


@pytest.mark.slow
def test_stratified_subset(train_split):
    x, y = stratified_subset(train_split.images, train_split.labels, per_class=10, seed=1)
    assert x.shape == (240, 28, 28)
    assert set(np.bincount(y, minlength=25)[np.unique(train_split.labels)]) == {10}
    full_x, _ = stratified_subset(train_split.images, train_split.labels, per_class=0)
    assert full_x is train_split.images


@pytest.mark.slow
def test_normalise_and_raw(train_split):
    x = normalise(train_split.images[:10])
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    raw = scale(train_split.images[:10], normalised=False)
    assert raw.max() > 1.0 and raw.dtype == np.float32


# ---- bad files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_lines() -> list[str]:
    """A header and 5 image rows as the Kaggle CSVs write them (CRLF; labels 6, 5, 10, 0, 3 as
    the real test file starts; seeded pixels 0-255): a valid file, though not an original."""
    rng = np.random.default_rng(0)
    header = ",".join(["label", *(f"pixel{i}" for i in range(1, 785))]) + "\r\n"
    rows = [",".join(map(str, [label, *rng.integers(0, 256, 784)])) + "\r\n" for label in (6, 5, 10, 0, 3)]
    return [header, *rows]


def _write(folder: Path, lines: list[str], name: str = "sign_mnist_test.csv") -> Path:
    path = folder / name
    path.write_text("".join(lines), newline="")
    return path


def _set_cell(line: str, column: int, value: str) -> str:
    cells = line.rstrip("\r\n").split(",")
    cells[column] = value
    return ",".join(cells) + "\r\n"


def test_missing_file_says_how_to_fetch(tmp_path):
    with pytest.raises(DataFileNotFound) as info:
        find_split_file("train", tmp_path)
    message = str(info.value)
    assert "sign_mnist_train.csv" in message and str(tmp_path) in message
    assert "signlab data fetch" in message and "SIGNLAB_DATA_DIR" in message


def _mutations(lines: list[str]) -> dict[str, tuple[list[str], int | None, str | None, str]]:
    """name -> (file lines, row, column, words the message must hold)."""
    header, rows = lines[0], lines[1:]
    return {
        "empty": ([], None, None, "empty"),
        "header only": ([header], 2, None, "no image rows"),
        "wrong header": ([header.replace("pixel5,", "pixelV,")] + rows, 1, None, "header column 6 is 'pixelV', expected 'pixel5'"),  # noqa: E501 (a table of cases)
        "short header": ([header.replace(",pixel784", "")] + rows, 1, None, "header has 784 columns, expected 785"),
        "extra column": ([header, rows[0], rows[1].rstrip("\r\n") + ",7\r\n"] + rows[2:], 3, None, "has 786 columns, expected 785"),  # noqa: E501 (a table of cases)
        "missing column": ([header, rows[0], rows[1], rows[2].rsplit(",", 1)[0] + "\r\n"], 4, None, "has 784 columns, expected 785"),  # noqa: E501 (a table of cases)
        "non-integer": ([header, rows[0], _set_cell(rows[1], 12, "abc")] + rows[2:], 3, "pixel12", "'abc' is not an integer"),
        "float": ([header, _set_cell(rows[0], 3, "12.5")] + rows[1:], 2, "pixel3", "'12.5' is not an integer"),
        "missing value": ([header, rows[0], rows[1], _set_cell(rows[2], 100, "")] + rows[3:], 4, "pixel100", "missing value"),
        "pixel 256": ([header] + rows[:3] + [_set_cell(rows[3], 784, "256")] + rows[4:], 5, "pixel784", "pixel value 256 is outside 0-255"),  # noqa: E501 (a table of cases)
        "pixel -1": ([header, _set_cell(rows[0], 1, "-1")] + rows[1:], 2, "pixel1", "pixel value -1 is outside 0-255"),
        "label 9": ([header, rows[0], _set_cell(rows[1], 0, "9")] + rows[2:], 3, "label", "label 9 (J) does not occur"),
        "label 25": ([header, _set_cell(rows[0], 0, "25")] + rows[1:], 2, "label", "label 25 (Z) does not occur"),
        "label 26": ([header] + rows[:4] + [_set_cell(rows[4], 0, "26")], 6, "label", "label 26 is outside 0-24"),
        "label -3": ([header, _set_cell(rows[0], 0, "-3")] + rows[1:], 2, "label", "label -3 is outside 0-24"),
    }


CASES = [
    "empty", "header only", "wrong header", "short header", "extra column", "missing column",
    "non-integer", "float", "missing value", "pixel 256", "pixel -1", "label 9", "label 25",
    "label 26", "label -3",
]


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
@pytest.mark.parametrize("case", CASES)
def test_bad_file_names_file_row_column_problem(case, gz, good_lines, tmp_path):
    lines, row, column, words = _mutations(good_lines)[case]
    path = _write(tmp_path, lines)
    if gz:
        gz_path = tmp_path / "sign_mnist_test.csv.gz"
        gz_path.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        path = gz_path
    with pytest.raises(DataFileError) as info:
        load_split("test", tmp_path)
    err = info.value
    message = str(err)
    assert str(path) in message and words in message
    assert err.row == row
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert err.column == column and f"column '{column}'" in message
    assert not list(config.cache_dir().glob("*" + _sha(path) + "*")), "nothing is cached from a bad file"


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_modified_but_valid_file_loads_with_warning(good_lines, tmp_path):
    path = _write(tmp_path, good_lines)
    with pytest.warns(ModifiedDataWarning, match="differs from the original"):
        split = load_csv(path)
    assert split.images.shape == (5, 28, 28) and not split.verified
    with pytest.warns(ModifiedDataWarning):
        assert not load_csv(path).verified  # the cached copy warns too


@pytest.mark.slow
def test_original_file_loads_without_warning(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModifiedDataWarning)
        assert load_split("test", data_dir).verified


def test_not_a_csv_at_all(tmp_path):
    (tmp_path / "sign_mnist_train.csv.gz").write_bytes(b"\x1f\x8b\x08garbage that is not gzip")
    with pytest.raises(DataFileError, match="sign_mnist_train.csv.gz"):
        load_split("train", tmp_path)
