"""What signlab can tell apart: group-resampled intervals, paired comparisons, and the rules
that break ties between epochs and between trials (no data needed)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from signlab.contract import CONFIRM_ATTR_PREFIX, N_PARAMS, VAL_LOSS
from signlab.models.intervals import group_interval, image_interval, paired_comparison
from signlab.models.train import FitResult
from signlab.search.confirm import confirmed_choice
from signlab.search.outputs import ranked_trials
from signlab.search.study_config import StudyConfig


def duplicated(n_groups: int = 300, per_group: int = 20, p_fail: float = 0.03, seed: int = 0):
    """Images in groups whose variants share their fate: a failed photo fails most variants."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    hard = rng.random(n_groups) < p_fail
    correct = np.where(hard[groups], rng.random(groups.size) < 0.2, rng.random(groups.size) < 0.998)
    return correct.astype(np.int8), groups


def test_group_interval_is_wider_than_per_image_and_holds_the_estimate():
    correct, groups = duplicated()
    grouped, single = group_interval(correct, groups), image_interval(correct)
    assert grouped.estimate == pytest.approx(correct.mean()) == pytest.approx(single.estimate)
    assert grouped.contains(grouped.estimate) and single.contains(single.estimate)
    assert (grouped.high - grouped.low) > 2 * (single.high - single.low)
    # every image its own group: the bootstrap agrees with the binomial interval
    alone = group_interval(correct, np.arange(correct.size), n=400)
    assert (alone.high - alone.low) == pytest.approx(single.high - single.low, rel=0.25)
    assert group_interval(correct, groups) == grouped, "the same predictions give the same interval"


def test_paired_comparison_verdicts():
    correct, groups = duplicated()
    same = paired_comparison(correct, correct, groups)
    assert same.difference.estimate == 0 and same.verdict == "no measurable difference"
    better = correct.copy()
    better[groups < 60] = 1  # right on every variant of 60 photos where the other failed some
    compared = paired_comparison(better, correct, groups)
    assert compared.difference.estimate > 0 and compared.verdict == "better"
    assert paired_comparison(correct, better, groups).verdict == "worse"
    assert compared.n_images == correct.size and compared.n_groups == 300
    # a difference within noise: one photo's variants
    close = correct.copy()
    close[groups == 0] = 1 - close[groups == 0]
    assert paired_comparison(close, correct, groups).verdict == "no measurable difference"
    assert "points" in compared.text()
    with pytest.raises(ValueError, match="differ in number"):
        paired_comparison(correct[:-1], correct, groups)


def history(*epochs: tuple[float, float]) -> FitResult:
    return FitResult(None, [{"val_accuracy": a, "val_loss": loss} for a, loss in epochs])  # type: ignore[arg-type]


def test_best_epoch_ties_go_to_lower_loss_then_the_later_epoch():
    assert history((0.9, 0.5), (0.95, 0.4), (0.93, 0.1)).best_epoch == 2
    assert history((1.0, 0.30), (0.9, 0.2), (1.0, 0.10), (1.0, 0.20)).best_epoch == 3  # lower loss
    assert history((1.0, 0.10), (1.0, 0.10), (0.5, 0.0)).best_epoch == 2  # full tie: later
    whole = FitResult(None, [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.7}])  # type: ignore[arg-type]
    assert whole.best_epoch == 3, "without validation the last epoch is kept"


def study_of(values: list[tuple[float, float | None, int]]) -> optuna.Study:
    """A real in-memory study of complete trials (value, validation loss, params)."""
    study = optuna.create_study(direction="maximize")
    for value, loss, params in values:
        attrs = {N_PARAMS: float(params)} | ({} if loss is None else {VAL_LOSS: loss})
        study.add_trial(optuna.trial.create_trial(
            params={"x": float(len(study.trials))}, distributions={"x": optuna.distributions.FloatDistribution(0, 100)},
            value=value, user_attrs=attrs))
    return study


def test_trial_ties_go_to_lower_validation_loss_then_fewer_params():
    study = study_of([(0.99, 0.20, 100), (0.995, 0.30, 500), (0.995, 0.10, 900), (0.995, 0.10, 300), (0.9, 0.0, 1)])
    assert study.best_trial.number == 1, "Optuna alone takes the first of equals"
    assert [t.number for t in ranked_trials(study)] == [3, 2, 1, 0, 4]
    older = study_of([(0.995, None, 100), (0.995, 0.2, 100)])  # a trial from before val loss was kept
    assert ranked_trials(older)[0].number == 1


CONFIG = dict(study_name="c", family="cnn", space={"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}},
              seed=5)


def test_confirm_chooses_by_the_mean_of_new_seeds_once_all_are_in():
    study = study_of([(0.99, 0.2, 100), (0.995, 0.1, 100), (0.98, 0.1, 100), (0.97, 0.1, 100)])
    cfg = StudyConfig.model_validate(CONFIG | {"confirm": {"top_k": 3, "seeds": 2}})
    ranked = ranked_trials(study)
    assert [t.number for t in ranked[:3]] == [1, 0, 2]
    assert confirmed_choice(study, cfg, ranked) is None, "nothing confirmed yet: the ranking's first stands"
    study.set_user_attr(f"{CONFIRM_ATTR_PREFIX}1", {"6": 0.97, "7": 0.975})
    study.set_user_attr(f"{CONFIRM_ATTR_PREFIX}0", {"6": 0.99, "7": 0.985})
    assert confirmed_choice(study, cfg, ranked) is None, "trial 2 still lacks its seeds"
    study.set_user_attr(f"{CONFIRM_ATTR_PREFIX}2", {"6": 0.99, "7": 0.98})
    assert confirmed_choice(study, cfg, ranked).number == 0
    no_confirm = StudyConfig.model_validate(CONFIG)
    assert confirmed_choice(study, no_confirm, ranked) is None
