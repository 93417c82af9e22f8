"""Confirmed picks: after the search, the best trials trained again with new seeds.

Near-tied trials of one study differ by less than a seed moves one model (docs/results.md),
so the trial with the best single validation figure is partly the luckiest draw. With
`confirm: {top_k: K, seeds: S}` in the study file, the K best complete trials (`ranked_trials`)
are each trained S more times on the same split with the seeds seed+1 ... seed+S, as runs
nested under the parent tagged `signlab.role=confirm`, `trial_number` and `confirm_seed`. The
choice goes to the best mean validation accuracy over those new runs (the trial's own first
run is left out: it was picked for being high, so counting it would favour the luckiest draw
again); ties keep the ranking's order. Nothing here reads test figures.

Results are kept as study user attributes (`confirm.<trial>`: validation accuracy by seed), so
an interrupted confirmation resumes where it stopped and every reader sees the same choice.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import mlflow
import optuna

from signlab.contract import (
    CONFIRM_ATTR_PREFIX,
    CONFIRM_PREFIX,
    CONFIRM_SEED,
    FAMILY_TAG,
    ROLE_CONFIRM,
    ROLE_TAG,
    SAME_AS_ATTR,
    STUDY_TAG,
    TRIAL_NUMBER_TAG,
    VAL_ACCURACY,
    WORKER_TAG,
)
from signlab.search.study_config import StudyConfig

FrozenTrial = optuna.trial.FrozenTrial


def confirm_seeds(cfg: StudyConfig) -> list[int]:
    """The new seeds each confirmed trial trains with: seed+1 ... seed+S."""
    return [] if cfg.confirm is None else [cfg.seed + 1 + i for i in range(cfg.confirm.seeds)]


def candidates(cfg: StudyConfig, ranked: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials to confirm: the `top_k` best complete ones (a trial that only repeated an
    earlier one's params, not trained again, is that earlier trial: left out)."""
    if cfg.confirm is None:
        return []
    return [t for t in ranked if SAME_AS_ATTR not in t.user_attrs][:cfg.confirm.top_k]


def confirmations(study: optuna.Study, trial_number: int) -> dict[int, float]:
    """A trial's confirm runs so far: validation accuracy by seed."""
    found = study.user_attrs.get(f"{CONFIRM_ATTR_PREFIX}{trial_number}") or {}
    return {int(seed): float(value) for seed, value in found.items()}


def confirmed_choice(study: optuna.Study, cfg: StudyConfig, ranked: list[FrozenTrial]) -> FrozenTrial | None:
    """The candidate with the best mean over its confirm runs, once every candidate has all its
    seeds; None before (or without `confirm:`), when the ranking's first stands."""
    chosen = candidates(cfg, ranked)
    seeds = confirm_seeds(cfg)
    if not chosen:
        return None
    means = []
    for trial in chosen:
        done = confirmations(study, trial.number)
        if any(seed not in done for seed in seeds):
            return None
        means.append(statistics.fmean(done[seed] for seed in seeds))
    best = max(range(len(chosen)), key=lambda i: (means[i], -i))  # ties: the ranking's order
    return chosen[best]


def run_confirmations(study: optuna.Study, cfg: StudyConfig, data, ranked: list[FrozenTrial],  # noqa: ANN001
                      echo: Callable[[str], None] = print) -> None:
    """Train each candidate once per confirm seed that it lacks, as runs nested under the active
    (parent) run; log each candidate's mean and std on the parent."""
    from signlab.models.train import free_graph
    from signlab.runs import lifecycle
    from signlab.runs.job import train_and_log
    from signlab.search.space import trial_spec

    for trial in candidates(cfg, ranked):
        done = confirmations(study, trial.number)
        for seed in confirm_seeds(cfg):
            if seed in done:
                continue
            spec = trial_spec(optuna.trial.FixedTrial(trial.params), cfg)
            tags = {ROLE_TAG: ROLE_CONFIRM, STUDY_TAG: cfg.study_name, TRIAL_NUMBER_TAG: str(trial.number),
                    CONFIRM_SEED: str(seed), FAMILY_TAG: cfg.family, WORKER_TAG: lifecycle.this_process()}
            echo(f"confirm trial {trial.number}, seed {seed}: {spec.epochs} epochs on the same split")
            with lifecycle.tracked_run(nested=True, run_name=f"confirm {trial.number} s{seed}", tags=tags):
                outcome = train_and_log(spec, data, seed=seed, extra_params={CONFIRM_SEED: seed})
            free_graph()
            done[seed] = float(outcome.metrics[VAL_ACCURACY])
            study.set_user_attr(f"{CONFIRM_ATTR_PREFIX}{trial.number}", {str(k): v for k, v in done.items()})
            echo(f"  val_accuracy {done[seed]:.4f} (run {outcome.run_id})")
    summary = {}
    for trial in candidates(cfg, ranked):
        values = list(confirmations(study, trial.number).values())
        if values:
            summary[f"{CONFIRM_PREFIX}mean.{trial.number}"] = statistics.fmean(values)
            summary[f"{CONFIRM_PREFIX}std.{trial.number}"] = statistics.stdev(values) if len(values) > 1 else 0.0
    if summary:
        mlflow.log_metrics(summary)


def confirm_lines(study: optuna.Study, cfg: StudyConfig, ranked: list[FrozenTrial]) -> list[str]:
    """One line per confirmed trial: its search figure and its confirm runs' mean ± std."""
    lines = []
    for trial in candidates(cfg, ranked):
        values = list(confirmations(study, trial.number).values())
        if values:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            lines.append(f"  confirmed trial {trial.number}: search val_accuracy {trial.value:.4f}, "
                         f"{len(values)} new seeds {statistics.fmean(values):.4f} ± {sd:.4f}")
    return lines
