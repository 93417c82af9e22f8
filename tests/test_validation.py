"""Honest validation on the real training file: groups of variants, the grouped split, the
leakage diagnostic, and `signlab data split`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import subprocess_env

from signlab.data import DataSettings
from signlab.data.dataset import load_files
from signlab.data.groups import cached_groups, leakage, variant_groups
from signlab.data.validation import validation_rows
from signlab.runs.job import prepare_data


@pytest.mark.slow
def test_groups_never_mix_letters_even_when_built_across_letters(train_split):
    """Built per letter for speed; built over three letters at once (every image given one
    label), no component may span two letters, or the per-letter shortcut would hide it."""
    rows = np.flatnonzero(np.isin(train_split.labels, [0, 4, 18]))  # A, E, S: closed fists, the most alike
    images, labels = train_split.images[rows], train_split.labels[rows]
    joint = variant_groups(images, np.zeros_like(labels))
    for group in np.unique(joint):
        assert len(np.unique(labels[joint == group])) == 1, f"group {group} mixes letters"
    assert len(np.unique(joint)) == len(np.unique(variant_groups(images, labels)))


@pytest.mark.slow
def test_grouped_split_keeps_groups_whole_and_letters_on_both_sides(train_split):
    rows = validation_rows(train_split, "grouped", 0.2, seed=0)
    assert not set(rows.groups[rows.train]) & set(rows.groups[rows.val])
    assert len(rows.train) + len(rows.val) == len(train_split) and not set(rows.train) & set(rows.val)
    assert set(train_split.labels[rows.val]) == set(train_split.labels[rows.train]) == set(train_split.labels)
    assert 0.17 < len(rows.val) / len(train_split) < 0.23
    sizes = np.bincount(rows.groups)
    assert 1000 < len(sizes) < 1600 and 15 <= np.median(sizes) <= 25  # ~20 variants per source photo
    other = validation_rows(train_split, "grouped", 0.2, seed=1)
    assert not np.array_equal(other.val, rows.val)


@pytest.mark.slow
def test_diagnostic_separates_random_from_grouped(train_split, test_split):
    """Every training row is a candidate neighbour; every 4th validation or test row asks (the
    figures move by under a point from the full sides': 100.0 / 78.8 / 79.7% 1-NN accuracy)."""
    def diagnostic(rows, images, labels):  # noqa: ANN001, ANN202
        return leakage(train_split.images[rows.train], train_split.labels[rows.train], images[::4], labels[::4])

    random_rows = validation_rows(train_split, "random", 0.2, seed=0)
    random = diagnostic(random_rows, train_split.images[random_rows.val], train_split.labels[random_rows.val])
    grouped_rows = validation_rows(train_split, "grouped", 0.2, seed=0)
    grouped = diagnostic(grouped_rows, train_split.images[grouped_rows.val], train_split.labels[grouped_rows.val])
    test = diagnostic(grouped_rows, test_split.images, test_split.labels)
    assert random.nn_accuracy > 0.99 and random.nn_similarity > 0.99  # near-copies on both sides
    assert grouped.nn_accuracy < 0.9 and grouped.nn_similarity < 0.9
    assert abs(grouped.nn_accuracy - test.nn_accuracy) < 0.05  # it looks like the test split


@pytest.mark.slow
def test_subset_keeps_sides_apart_and_run_sizes_match(train_split, data_dir):
    full = validation_rows(train_split, "grouped", 0.2, seed=0)
    quick = validation_rows(train_split, "grouped", 0.2, seed=0, subset=20)
    assert set(quick.val) <= set(full.val) and set(quick.train) <= set(full.train)
    assert np.bincount(train_split.labels[quick.val]).max() == 4
    data = prepare_data(load_files(data_dir), DataSettings(subset=20))
    assert data.sizes()["n_val"] == len(quick.val) and data.params()["val_strategy"] == "grouped"


@pytest.mark.slow
def test_data_split_writes_the_same_rows_in_every_process(tmp_path, train_split, data_dir):
    """`signlab data split` here and in a child process (its own hash seed and state)."""
    from typer.testing import CliRunner

    from signlab.cli import app

    def check(output: str, folder: str) -> pd.DataFrame:
        assert "validation vs training rows: median nearest-neighbour similarity" in output
        assert "test split vs training rows:" in output
        return pd.read_csv(tmp_path / folder / "split.csv")

    here = CliRunner().invoke(app, ["data", "split", "--output", str(tmp_path / "a"), "--data-dir", str(data_dir)])
    assert here.exit_code == 0, here.output[-2000:]
    child = subprocess.run([sys.executable, "-m", "signlab", "data", "split", "--output", str(tmp_path / "b")],
                           capture_output=True, text=True, env=subprocess_env(SIGNLAB_DATA_DIR=str(data_dir)),
                           timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    first, second = check(here.stdout, "a"), check(child.stdout, "b")
    pd.testing.assert_frame_equal(first, second)
    assert list(first.columns) == ["row", "label", "group", "split"] and len(first) == len(train_split)
    assert (first["label"].to_numpy() == train_split.labels).all()
    rows = validation_rows(train_split, "grouped", 0.2, seed=0)
    assert (first.index[first["split"] == "val"].to_numpy() == rows.val).all()
    assert (first["group"].to_numpy() == cached_groups(train_split.images, train_split.labels, train_split.sha256)).all()


def test_validation_settings_are_checked(tmp_path):
    from signlab.errors import UserError
    from signlab.search.study_config import load_study_config

    path = tmp_path / "s.yaml"
    path.write_text("study_name: s\nfamily: mlp\nval_fraction: 0.2\nspace:\n  units: {type: int, low: 4, high: 8}\n")
    with pytest.raises(UserError, match="val_fraction: now validation.fraction"):
        load_study_config(path)
    path.write_text("study_name: s\nfamily: mlp\nvalidation: {strategy: nearest}\nspace:\n  units: {type: int, low: 4, high: 8}\n")  # noqa: E501
    with pytest.raises(UserError, match=r"validation.strategy: Input should be 'grouped' or 'random'"):
        load_study_config(path)
