"""MLproject parameters (always `--name value`, MLflow's true/false, 0 and '') as `signlab`
options, without `mlflow run`."""

from __future__ import annotations

import pytest

from signlab.mlproject import translate


@pytest.mark.parametrize("given, passed", [
    (["--augment", "true", "--adaptive-lr", "false"], ["--augment", "--no-adaptive-lr"]),
    (["--force", "YES", "--augment", "0"], ["--force", "--no-augment"]),
    (["--epochs", "0", "--n-trials", "0.0", "--timeout", "0", "--max-epochs", "0", "--max-total-trials", "0"], []),
    (["--epochs", "5", "--n-trials", "10"], ["--epochs", "5", "--n-trials", "10"]),
    (["--seed", "0", "--subset", "0"], ["--seed", "0", "--subset", "0"]),  # 0 is a value here, not "unset"
    (["--storage", "", "--study-name", "", "--tracking-uri", "sqlite:///m.db"], ["--tracking-uri", "sqlite:///m.db"]),
    (["study", "run", "studies/cnn.yaml", "--n-trials", "3"], ["study", "run", "studies/cnn.yaml", "--n-trials", "3"]),
    (["train", "--preset", "cnn3", "--augment", "true"], ["train", "--preset", "cnn3", "--augment"]),
    # The MLproject's defaults are words (the MLflow UI shows '' as `''`): each means unset.
    (["study", "run", "s.yaml", "--n-trials", "file", "--subset", "file", "--storage", "default",
      "--max-total-trials", "none", "--seed", "file", "--parallel", "file"], ["study", "run", "s.yaml"]),
    (["train", "--epochs", "preset", "--data-dir", "default"], ["train"]),
    (["report", "--study", "all", "--family", "all", "--top", "1"], ["report", "--top", "1"]),
    # ... and only where they are defaults: a row named `all`, a train family `all` reach the CLI.
    (["reference", "all", "--seeds", "default"], ["reference", "all"]),
    (["train", "--family", "all"], ["train", "--family", "all"]),
    (["study", "run", "s.yaml", "--max-total-trials", "none", "--n-trials", "none"],
     ["study", "run", "s.yaml", "--n-trials", "none"]),
])
def test_translate(given, passed):
    assert translate(given) == passed


def test_a_flag_that_is_not_true_or_false_stops_with_one_line():
    with pytest.raises(SystemExit) as info:
        translate(["--augment", "maybe"])
    assert str(info.value) == "error: --augment must be true or false, got 'maybe'"
