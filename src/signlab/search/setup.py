"""A study file turned into Optuna objects: command-line overrides applied, the sampler
(seeded per trial), the pruner, the storage, and the study created or resumed, checked
against its directions and data settings."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from signlab.config import DEFAULT_STORAGE
from signlab.contract import BRACKETS_ATTR, DATA_ATTR, SEED_PARAM, SUBSET_PARAM, VAL_FRACTION_PARAM, VAL_STRATEGY_PARAM
from signlab.errors import UserError, describe_error
from signlab.search.optuna_internals import SeededHyperband
from signlab.search.space import check_buildable
from signlab.search.storage import open_storage
from signlab.search.study_config import StudyConfig, load_study_config
from signlab.stores import redact


@dataclass
class Overrides:
    """Command-line values that replace the study file's (None: keep the file's)."""

    n_trials: int | None = None
    timeout: float | None = None
    max_epochs: int | None = None
    subset: int | None = None
    study_name: str | None = None
    seed: int | None = None
    max_total_trials: int | None = None  # all workers together: no trial starts past this total
    refit_seeds: int | None = None  # the file's refit.seeds (0: no refit)
    parallel: int | str | None = None  # trials at once here: a number or "auto" (the file's `parallel`)
    new_parent: bool | None = None  # go on under a new parent run if the study's is gone (`StudyConfig.new_parent`)

    def apply(self, cfg: StudyConfig) -> StudyConfig:
        """The study file's settings with these values, checked as the file's are (a UserError
        names the option: `--seed -1: ...`)."""
        from pydantic import ValidationError

        changes = {k: v for k, v in vars(self).items() if v is not None and k in StudyConfig.model_fields}
        if self.refit_seeds is not None:
            changes["refit"] = {**cfg.refit.model_dump(), "seeds": self.refit_seeds}
        try:
            resolved = StudyConfig.model_validate({**cfg.model_dump(), **changes})
        except ValidationError as exc:
            raise UserError("; ".join(describe_error(err, option=True) for err in exc.errors())) from None
        return resolved.starting_new_parent() if self.new_parent else resolved


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study file's sampler; with a seed, seeded afresh for each trial (`TrialSeeded`)."""
    seed = cfg.sampler.seed
    if seed is None:
        return _sampler(cfg, None)
    return TrialSeeded(lambda trial_seed: _sampler(cfg, trial_seed), seed)


def _sampler(cfg: StudyConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    s = cfg.sampler
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials,
                                      multivariate=True, constant_liar=True)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number` of a study whose file says `seed`."""
    return int(np.random.SeedSequence([seed % 2**64, number]).generate_state(1)[0])


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler built again before each trial, seeded with `trial_seed(seed, trial number)`.

    The rule: trial n draws with a seed derived from the study file's seed and n alone.
    The storage gives each trial its own number, so a resumed study (its new trials have
    new numbers) and workers started at the same moment, with or without --worker, draw
    new trials; the same study run again from scratch in one process draws the same ones
    (TPE's later draws also follow the results so far, as reproducible as training is).
    Everything else a sampler keeps (the trials so far) is read from the storage."""

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._build, self._seed = build, seed
        self._inner = build(trial_seed(seed, 0))

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._inner = self._build(trial_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if p.type == "none" or cfg.multi_objective:  # Optuna prunes single-objective studies only
        return optuna.pruners.NopPruner()
    if p.type == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.lower, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":  # brackets from the study's seed, not its name (check_same_data stores the key)
        return SeededHyperband(min_resource=p.min_resource, max_resource=cfg.max_epochs,
                               reduction_factor=p.reduction_factor)
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def resolved_config(config: str | Path, overrides: Overrides) -> StudyConfig:
    """The study file with the command line's overrides, checked down to buildable models."""
    cfg = overrides.apply(load_study_config(config))
    check_buildable(cfg, str(config))
    return cfg


def checked_inputs(config: str | Path, overrides: Overrides, storage_url: str, data_dir: str | None) -> StudyConfig:
    """The checks a study's start makes that need no model, data or MLflow, in its order: the
    study file with the overrides, both data files there, the storage URL readable. The CLI
    makes them before it imports MLflow or TensorFlow (seconds), so that such a mistake is
    refused within a second; the start makes them again where it always did."""
    cfg = resolved_config(config, overrides)
    from signlab.data.dataset import find_split_file  # pandas: after the study file's checks
    from signlab.stores import parse

    for split in ("train", "test"):
        find_split_file(split, data_dir or None)
    parse(storage_url, "storage", DEFAULT_STORAGE)  # open_storage's first step, same words
    return cfg


def study_storage(cfg: StudyConfig, storage_url: str, cap: int | None = None) -> RDBStorage:
    """The study's storage, checked usable, with heartbeats, the failed-trial handler and
    the trial cap (`max_total_trials`)."""
    from signlab.search import recovery  # MLflow: imported once the study file has been checked

    return open_storage(storage_url, cfg.heartbeat_interval, cfg.grace_period,
                        recovery.FailedTrialHandler(cfg.retry_failed_trials, cfg.grace_period), cap=cap)


def load_or_create(cfg: StudyConfig, storage: RDBStorage, storage_url: str) -> optuna.Study:
    """The study named in `cfg`, created or resumed; refuses one with other directions."""
    try:
        existing = optuna.load_study(study_name=cfg.study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        have = [d.name.lower() for d in existing.directions]
        if have != cfg.directions:
            raise UserError(
                f"study {cfg.study_name!r} in {redact(storage_url)} has directions {have}, the study file "
                f"asks for {cfg.directions}; use another study_name (the stored study is untouched)")
    study = optuna.create_study(study_name=cfg.study_name, storage=storage, directions=cfg.directions,
                                sampler=make_sampler(cfg), pruner=make_pruner(cfg), load_if_exists=True)
    with warnings.catch_warnings():  # experimental since Optuna 3.2; optuna-dashboard shows these names
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(cfg.objectives))
    return study


def check_same_data(study: optuna.Study, cfg: StudyConfig, storage_url: str) -> None:
    """A resumed study must see the same validation data, or its trials don't compare. A new
    study records its data settings, and the key Hyperband draws its trials' brackets from
    (its seed: `optuna_internals.SeededHyperband`)."""
    settings = {SUBSET_PARAM: cfg.subset, VAL_FRACTION_PARAM: cfg.validation.fraction, SEED_PARAM: cfg.seed,
                VAL_STRATEGY_PARAM: cfg.validation.strategy}
    stored = study.user_attrs.get(DATA_ATTR)
    if stored is None:
        # the key first: a worker that sees the data settings stored sees the key too; a study
        # stored before the key existed has its data settings and no key (brackets by its name)
        study.set_user_attr(BRACKETS_ATTR, f"seed-{cfg.seed}")
        study.set_user_attr(DATA_ATTR, settings)
    elif stored != settings:
        # a study stored before validation strategies existed used the random split
        diff = ", ".join(f"{k} {stored.get(k, 'random' if k == VAL_STRATEGY_PARAM else None)} (now {settings[k]})"
                         for k in settings if stored.get(k) != settings[k])
        raise UserError(f"study {cfg.study_name!r} in {redact(storage_url)} was run with {diff}: its trials "
                        "would not compare; resume with the same settings or use another study_name")


def with_stored_data(cfg: StudyConfig, study: optuna.Study) -> StudyConfig:
    """`cfg` with the data settings the stored study ran with (subset, seed, validation split):
    a study run with `--seed 7` is refit with seeds 7, 8, ... on its own data, whatever the
    file says."""
    stored = study.user_attrs.get(DATA_ATTR)
    if not stored:
        return cfg
    validation = {**cfg.validation.model_dump(), "fraction": stored.get(VAL_FRACTION_PARAM, cfg.validation.fraction),
                  "strategy": stored.get(VAL_STRATEGY_PARAM, cfg.validation.strategy)}
    return StudyConfig.model_validate({**cfg.model_dump(), "subset": stored.get(SUBSET_PARAM, cfg.subset),
                                       "seed": stored.get(SEED_PARAM, cfg.seed), "validation": validation})


def trial_budget(cfg: StudyConfig, max_total: int | None, existing: int) -> tuple[int, list[Any]]:
    """Trials this worker may start, and the callback that stops it when the study (all
    workers together, trials of every state counted) reaches `max_total`."""
    if max_total is None:
        return cfg.n_trials, []
    return max(0, min(cfg.n_trials, max_total - existing)), [optuna.study.MaxTrialsCallback(max_total, states=None)]
