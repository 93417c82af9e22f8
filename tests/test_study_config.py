"""Study files: the shipped ones load; each kind of mistake names the file and the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from signlab.cli import app
from signlab.contract import CHAMPION, DEFAULT_MODEL_URI, MODEL_NAMES, OBJECTIVE_METRIC
from signlab.errors import UserError
from signlab.search.setup import Overrides
from signlab.search.space import spec_from_values
from signlab.search.study_config import StudyConfig, load_study_config

ROOT = Path(__file__).resolve().parents[1]
GOOD = """\
study_name: s
family: cnn
space:
  n_blocks: {type: int, low: 2, high: 4}
  learning_rate: {type: float, low: 0.0003, high: 0.003, log: true}
  augment: {type: categorical, choices: [true, false]}
"""


@pytest.mark.parametrize("name", ["cnn", "mlp", "cnn_small", "cnn_tiny"])
def test_shipped_study_files_load(name):
    cfg = load_study_config(ROOT / "studies" / f"{name}.yaml")
    assert cfg.study_name == {"cnn": "cnn_study", "mlp": "mlp_study", "cnn_small": "cnn_small", "cnn_tiny": "cnn_tiny"}[name]
    assert cfg.sampler.type == "tpe" and cfg.sampler.seed is not None
    assert cfg.validation.strategy == "grouped" and cfg.refit.seeds == (2 if name == "cnn" else 3)
    if name == "cnn_small":
        assert cfg.multi_objective and cfg.directions == ["maximize", "minimize"]
    else:
        assert cfg.directions == ["maximize"]
        # augmented networks start slower: the cnn study's pruner judges none before 3 epochs
        assert cfg.pruner.type == ("median" if name == "mlp" else "hyperband")
        if name != "mlp":
            assert cfg.pruner.min_resource >= 3 and cfg.fixed["augment"] is True
        if name == "cnn_tiny":
            assert cfg.max_params == 20_000


CASES = {
    "unknown top-level key": (GOOD + "colour: red\n", "colour: Extra inputs are not permitted"),
    "unknown key in a param": (GOOD.replace("high: 4}", "high: 4, step: 1, sharp: true}"),
                               "space.n_blocks.sharp: Extra inputs are not permitted"),
    "low > high": (GOOD.replace("low: 2, high: 4", "low: 5, high: 4"),
                   "space.n_blocks: low (5) is greater than high (4)"),
    "log with zero bound": (GOOD.replace("low: 0.0003", "low: 0"),
                            "space.learning_rate: a log scale needs low > 0"),
    "log with negative bound": (GOOD.replace("low: 0.0003", "low: -0.1"),
                                "space.learning_rate: a log scale needs low > 0"),
    "empty choices": (GOOD.replace("[true, false]", "[]"), "space.augment.choices: List should have at least 1 item"),
    "wrong type of bound": (GOOD.replace("low: 2,", "low: two,"), "space.n_blocks.low: Input should be a valid integer"),
    "wrong param type": (GOOD.replace("type: int", "type: integer"), "space.n_blocks: Input tag 'integer'"),
    "wrong type of setting": (GOOD + "n_trials: many\n", "n_trials: Input should be a valid integer"),
    "unsearchable key": (GOOD + "  wings: {type: int, low: 1, high: 2}\n", "space.wings: not searchable for a cnn"),
    "directions vs objectives": (GOOD + "directions: [minimize]\n", "directions: ['minimize'] do not fit objectives"),
    "missing family": (GOOD.replace("family: cnn\n", ""), "family: Field required"),
    "bad sampler": (GOOD + "sampler: {type: grid}\n", "sampler.type: Input should be 'tpe', 'random' or 'nsga2'"),
    "threshold without bound": (GOOD + "pruner: {type: threshold}\n", "pruner.lower: the threshold pruner needs"),
    "not a mapping": ("- a\n- b\n", "expected a mapping of study settings"),
    "YAML syntax": (GOOD + "space: [\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_study_file_names_file_and_key(case, tmp_path):
    text, words = CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_study_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value), str(info.value)


def test_every_mistake_of_a_file_in_one_pass(tmp_path):
    """A schema error, an unknown space key, a key in both fixed and space, heartbeat
    settings that do not fit and a fixed value no model accepts: all in one message."""
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("family: cnn\n", "family: cnn\nn_trials: -1\nheartbeat_interval: 40\n"
                                 "fixed: {dense_dropout: 1.5, augment: true}\n")
                    + "  wings: {type: int, low: 1, high: 2}\n")
    with pytest.raises(UserError) as info:
        load_study_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: n_trials: Input should be greater than or equal to 1")
    for words in ("grace_period: 60 s must be at least twice heartbeat_interval (40 s)",
                  "space.wings: not searchable for a cnn", "fixed.augment: also in space",
                  "fixed, space: invalid cnn spec: dense_dropout: Input should be less than 1 (got 1.5)"):
        assert f"; {words}" in message, message


def test_study_check_command_reports_every_mistake(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("study_name: s", "study_name: ''\nfixed: {l2_dense: -1}")
                    + "  wings: {type: int, low: 1, high: 2}\n")
    result = CliRunner().invoke(app, ["study", "check", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = re.sub(r"\s+", " ", result.output)
    assert f"error: {path}: study_name: String should have at least 1 character" in line
    assert "space.wings: not searchable" in line and "fixed, space: invalid cnn spec: l2_dense:" in line


def test_missing_study_file(tmp_path):
    with pytest.raises(UserError, match=f"^{tmp_path / 'nope.yaml'}: no such study file$"):
        load_study_config(tmp_path / "nope.yaml")  # an empty folder: nothing to name
    with pytest.raises(UserError, match=f"^{tmp_path / 'no' / 'such.yaml'}: no such study file$"):
        load_study_config(tmp_path / "no" / "such.yaml")


def test_a_missing_study_file_names_the_nearest_or_the_folders_study_files(tmp_path):
    for name in ("cnn.yaml", "cnn_small.yaml", "cnn_tiny.yaml", "mlp.yml", "notes.txt"):
        (tmp_path / name).write_text(GOOD)
    with pytest.raises(UserError) as typo:
        load_study_config(tmp_path / "cnn_smal.yaml")
    assert str(typo.value) == f"{tmp_path / 'cnn_smal.yaml'}: no such study file; did you mean {tmp_path / 'cnn_small.yaml'}?"
    with pytest.raises(UserError) as other:
        load_study_config(tmp_path / "resnet.yaml")
    assert str(other.value) == (f"{tmp_path / 'resnet.yaml'}: no such study file; {tmp_path} has "
                                "cnn.yaml, cnn_small.yaml, cnn_tiny.yaml, mlp.yml")


def test_space_values_build_specs():
    cnn = spec_from_values("cnn", {"n_blocks": 4, "filters": [64, 32, 20, 20], "batch_norm": False,
                                   "conv_dropout": 0.2, "dense_units": 32}, epochs=3)
    assert [b.pool for b in cnn.blocks] == [True, True, True, False]  # as the paper's CNN 3
    assert [b.dropout for b in cnn.blocks] == [0.0, 0.2, 0.2, 0.2] and cnn.dense_units == [32]
    assert cnn.epochs == 3
    two = spec_from_values("cnn", {"n_blocks": 2, "filters": 16}, epochs=1)
    assert [b.pool for b in two.blocks] == [True, True] and [b.filters for b in two.blocks] == [16, 16]
    mlp = spec_from_values("mlp", {"n_layers": 2, "units": [256, 128], "alpha": 0.1}, epochs=5)
    assert mlp.hidden_layers == [256, 128] and mlp.alpha == 0.1


def test_every_objective_and_family_a_study_file_may_name_is_in_the_run_contract():
    """The report ranks a study's trials by the metric of its objective, and `promote`
    registers each family under its own name: a value the schema takes with no entry there
    would be ranked by the wrong metric or not be promotable."""
    fields = StudyConfig.model_fields
    objectives = set(get_args(get_args(fields["objectives"].annotation)[0]))
    assert objectives == set(OBJECTIVE_METRIC) == {"val_accuracy", "val_aug_accuracy", "n_params"}
    assert set(get_args(fields["family"].annotation)) == set(MODEL_NAMES) == {"cnn", "mlp"}
    assert DEFAULT_MODEL_URI == f"models:/{MODEL_NAMES['cnn']}@{CHAMPION}"


def test_command_line_refit_seeds_replace_the_files():
    cfg = load_study_config(ROOT / "studies/cnn.yaml")
    assert cfg.refit.seeds == 2
    assert Overrides(refit_seeds=0).apply(cfg).refit.seeds == 0
    assert Overrides(refit_seeds=5).apply(cfg).refit.seeds == 5
    assert Overrides().apply(cfg).refit.seeds == 2
    with pytest.raises(UserError, match=r"^--refit-seeds 11: Input should be less than or equal to 10"):
        Overrides(refit_seeds=11).apply(cfg)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_hyperband_brackets_follow_the_studys_seed_not_its_name(tmp_path):
    """Optuna draws a trial's Hyperband bracket from the study's name: the same seed under two
    `-P study_name`s pruned different trials. A study signlab creates stores its seed as the
    key: the same brackets under any name, other brackets for another seed. A study stored
    before the key existed (its data settings, no key) keeps Optuna's brackets from its name."""
    import optuna

    from signlab.contract import BRACKETS_ATTR, DATA_ATTR
    from signlab.search.setup import check_same_data, load_or_create, study_storage

    cfg = load_study_config(ROOT / "studies" / "cnn.yaml")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = study_storage(cfg, url)

    def brackets(study: optuna.Study) -> list[int]:
        for _ in range(12):
            trial = study.ask()
            trial.report(0.5, 1)
            trial.should_prune()  # sets the brackets up
            study.tell(trial, 0.5)
        return [study.pruner._get_bracket_id(study, t) for t in study.trials]

    def signlabs(name: str, seed: int, stored_data: dict | None = None) -> optuna.Study:
        named = cfg.model_copy(update={"study_name": name, "seed": seed})
        if stored_data:  # what an earlier signlab left: its data settings, no key
            optuna.create_study(study_name=name, storage=storage, direction="maximize").set_user_attr(DATA_ATTR, stored_data)
        study = load_or_create(named, storage, url)
        check_same_data(study, named, url)
        return study

    first = signlabs("cnn_study_s7", 7)
    assert first.user_attrs[BRACKETS_ATTR] == "seed-7"
    assert brackets(first) == brackets(signlabs("cnn_study_s7p", 7)) != brackets(signlabs("cnn_study_s0", 0))
    old = signlabs("cnn_study_old", 7, stored_data=first.user_attrs[DATA_ATTR])
    assert BRACKETS_ATTR not in old.user_attrs
    optunas = optuna.create_study(study_name="cnn_study_old", direction="maximize", pruner=optuna.pruners.HyperbandPruner(
        min_resource=cfg.pruner.min_resource, max_resource=cfg.max_epochs, reduction_factor=cfg.pruner.reduction_factor))
    assert brackets(old) == brackets(optunas) != brackets(signlabs("cnn_study_new", 7))
