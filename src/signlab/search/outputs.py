"""What a study leaves on its parent run and on screen: best trial(s), Optuna's plots,
the Pareto front, and a one-screen summary."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from signlab.contract import (
    BEST_RUN_TAG,
    BEST_TAG_PREFIX,
    BEST_TRIAL_TAG,
    CHOSEN_ATTR,
    CI_HIGH,
    CI_LOW,
    IMPORTANCE_CAUTION_TAG,
    IMPORTANCE_PREFIX,
    N_COMPLETE_METRIC,
    N_PARAMS,
    N_TRIALS_METRIC,
    NEAR_TIES_TAG,
    NOTE_TAG,
    RUN_ATTR,
    SAME_AS_ATTR,
    TEST_ACCURACY,
    TRIAL_STATE_TAG,
    VAL_ACCURACY,
    VAL_LOSS,
)
from signlab.plots import RememberedImportances, figure_of, pyplot_figures, save_html, save_png
from signlab.runs import store
from signlab.search.study_config import StudyConfig
from signlab.stores import redact

TrialState = optuna.trial.TrialState


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state."""
    states = [t.state for t in study.trials]
    return {N_TRIALS_METRIC: len(states), N_COMPLETE_METRIC: states.count(TrialState.COMPLETE),
            "n_pruned": states.count(TrialState.PRUNED), "n_failed": states.count(TrialState.FAIL)}


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """A single-objective study's complete trials, best first: the objective, then the lower
    validation loss of the kept epoch, then fewer parameters, then the earlier trial (Optuna's
    own `best_trial` takes the first of equal values whatever else they differ in)."""
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-sign * t.value, t.user_attrs.get(VAL_LOSS, math.inf),
                                           t.user_attrs.get(N_PARAMS, math.inf), t.number))


def best_trial(study: optuna.Study, cfg: StudyConfig) -> optuna.trial.FrozenTrial | None:
    """The study's choice, which its refit, `promote` and the report use. Single objective:
    the first of `ranked_trials`, or, with `confirm:` done, the confirmed trial with the best
    mean validation accuracy over its new seeds (`signlab.search.confirm`). Multi-objective:
    the Pareto trial with the highest validation accuracy, or the smallest reaching
    `target_val_accuracy`."""
    if not counts(study)[N_COMPLETE_METRIC]:
        return None
    if not cfg.multi_objective:
        from signlab.search.confirm import confirmed_choice  # confirm.py builds on this module

        ranked = ranked_trials(study)
        return confirmed_choice(study, cfg, ranked) or ranked[0]
    front = study.best_trials
    acc = cfg.objectives.index("val_accuracy") if "val_accuracy" in cfg.objectives else 0
    if cfg.target_val_accuracy is not None and N_PARAMS in cfg.objectives:
        size = cfg.objectives.index(N_PARAMS)
        good = [t for t in front if t.values[acc] >= cfg.target_val_accuracy]
        if good:
            return min(good, key=lambda t: t.values[size])
    return max(front, key=lambda t: t.values[acc])


def near_ties(study: optuna.Study, cfg: StudyConfig, best: optuna.trial.FrozenTrial,
               client: MlflowClient) -> tuple[list[optuna.trial.FrozenTrial], tuple[float, float] | None]:
    """The complete trials that validation does not tell from the study's choice, best first,
    and the choice's 95% interval over validation photos (its run's `final_val_accuracy_ci_low`
    and `_ci_high`): the trials whose validation accuracy lies inside that interval, each
    training once (a trial that only repeated another's params is that trial). The choice's own
    interval, not a paired comparison (trials keep no validation predictions), so it flags more
    ties rather than fewer. None and no trials where the choice has no interval (a simulated
    trial, a run logged before intervals existed) or the study does not choose on validation
    accuracy alone (several objectives, or `confirm:`, which settles such ties by training
    again)."""
    run_id = best.user_attrs.get(RUN_ATTR)
    if cfg.confirm is not None or cfg.objectives != ["val_accuracy"] or not run_id:  # one objective: validation accuracy
        return [], None
    try:
        metrics = client.get_run(run_id).data.metrics
    except MlflowException:  # its run deleted: nothing to read the interval from
        return [], None
    low, high = metrics.get(VAL_ACCURACY + CI_LOW), metrics.get(VAL_ACCURACY + CI_HIGH)
    if low is None or high is None:
        return [], None
    copied = best.user_attrs.get(SAME_AS_ATTR)
    tied = [t for t in ranked_trials(study) if t.number not in (best.number, copied)
            and SAME_AS_ATTR not in t.user_attrs and t.value >= low]
    return tied, (low, high)


def near_ties_line(tied: list[optuna.trial.FrozenTrial], interval: tuple[float, float]) -> str:
    """What the console and the parent run's description say of near ties: which trials, and
    how to settle them."""
    shown = ", ".join(f"{t.number} ({t.value:.4f})" for t in tied[:5]) + (", ..." if len(tied) > 5 else "")
    trials = "trial" if len(tied) == 1 else "trials"
    return (f"validation does not tell it from {trials} {shown}: inside its 95% interval over validation photos "
            f"({interval[0]:.4f}-{interval[1]:.4f}); `confirm: {{top_k: {min(len(tied) + 1, 5)}, seeds: 2}}` "
            "in the study file trains the top trials again and chooses by their mean")


# Below this many complete trials fANOVA's ranking of hyperparameters is noise: on 60 trials of
# the default space, the first n named the final top three from n = 20 on (docs/benchmarks.md,
# "Importances: where fANOVA's ranking settles").
MIN_TRIALS_FOR_IMPORTANCES = 20


def importance_caution(n_complete: int) -> str:
    """A warning to append to importances from too few complete trials ('' from enough)."""
    if n_complete >= MIN_TRIALS_FOR_IMPORTANCES:
        return ""
    trials = "trial" if n_complete == 1 else "trials"
    return (f" (from {n_complete} complete {trials}: not yet reliable, the ranking settles from about "
            f"{MIN_TRIALS_FOR_IMPORTANCES})")


def pareto_table(study: optuna.Study, cfg: StudyConfig) -> pd.DataFrame:
    """The Pareto front: trial, objective values, test accuracy (report only), params."""
    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        row: dict[str, Any] = {"trial": t.number}
        row.update(dict(zip(cfg.objectives, t.values, strict=True)))
        row[TEST_ACCURACY] = t.user_attrs.get(TEST_ACCURACY)
        row.update(t.params)
        rows.append(row)
    return pd.DataFrame(rows)


def importances(study: optuna.Study, cfg: StudyConfig) -> dict[str, float]:
    """How much each hyperparameter mattered to the first objective over the complete
    trials (Optuna's fANOVA, seeded); empty while there are too few trials to tell."""
    target = (lambda t: t.values[0]) if cfg.multi_objective else None
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(complete) >= 2 and len({t.values[0] for t in complete}) == 1:
        # every trial scored the same: nothing explains any variance (fANOVA raises here)
        return {name: 0.0 for name in sorted({k for t in complete for k in t.params})}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=target)
    except (ValueError, RuntimeError, ZeroDivisionError):  # fewer than 2 trials, one value only...
        return {}
    return {name: float(value) for name, value in found.items()}


def plots(study: optuna.Study, cfg: StudyConfig, vis: Any = optuna.visualization,
          evaluator: optuna.importance.BaseImportanceEvaluator | None = None) -> dict[str, Any]:
    """Optuna's figures that this study can draw (each needs enough trials): plotly's, or
    matplotlib's with `vis=optuna.visualization.matplotlib` (inside `pyplot_figures`).
    Importances by `evaluator`, else fANOVA with seed 0 (the ranking of importances.json)."""
    evaluator = evaluator or optuna.importance.FanovaImportanceEvaluator(seed=0)
    names = cfg.objectives
    target = {} if not cfg.multi_objective else {"target": lambda t: t.values[0], "target_name": names[0]}
    makers = {
        "optimization_history": lambda: vis.plot_optimization_history(study, **target),
        "param_importances": lambda: vis.plot_param_importances(study, evaluator=evaluator, **target),
        "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, **target),
        "slice": lambda: vis.plot_slice(study, **target),
    }
    if cfg.multi_objective:
        makers["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=names)
    figures = {}
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures[name] = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for it
            figures[name] = str(exc)
    return figures


def log_study_outputs(study: optuna.Study, cfg: StudyConfig) -> None:
    """On the active (parent) run: best-trial tags and metrics, plots, trials and Pareto tables.

    The best trial's params go in tags `best.<param>` and in best_trial.json (params are
    immutable in MLflow, and a resumed study can find a new best)."""
    step = len(study.trials)
    metrics = {k: float(v) for k, v in counts(study).items()}
    best = best_trial(study, cfg)
    if best is not None:
        mlflow.set_tags({f"{BEST_TAG_PREFIX}{k}": str(v) for k, v in best.params.items()})
        mlflow.set_tags({BEST_TRIAL_TAG: str(best.number),
                         BEST_RUN_TAG: str(best.user_attrs.get(RUN_ATTR))})
        if study.user_attrs.get(CHOSEN_ATTR) != best.number:
            study.set_user_attr(CHOSEN_ATTR, best.number)
        metrics.update({f"best_{k}": float(v) for k, v in best.user_attrs.items() if isinstance(v, float)})
        metrics["best_trial_number"] = float(best.number)
        metrics["best_value"] = float(best.values[0])
    if cfg.multi_objective:
        metrics["pareto_size"] = float(len(study.best_trials))
    mattered = importances(study, cfg)
    metrics.update({f"{IMPORTANCE_PREFIX}{name}": value for name, value in mattered.items()})
    if best is not None:
        tied, interval = near_ties(study, cfg, best, MlflowClient())
        if interval is not None:
            mlflow.set_tag(NEAR_TIES_TAG, ",".join(str(t.number) for t in tied) or "none")
        mlflow.set_tag(NOTE_TAG, _description(study, cfg, best)
                       + (f"\n\nThe choice: {near_ties_line(tied, interval)}." if tied and interval else ""))
    if mattered:
        mlflow.set_tag(IMPORTANCE_CAUTION_TAG, importance_caution(counts(study)[N_COMPLETE_METRIC]).strip(" ()") or "none")
    mlflow.log_metrics(metrics, step=step)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if best is not None:
            (folder / "best_trial.json").write_text(json.dumps(
                {"number": best.number, "values": best.values, "params": best.params,
                 "user_attrs": best.user_attrs}, indent=2, default=str))
        study.trials_dataframe().to_csv(folder / "trials.csv", index=False)
        if mattered:
            (folder / "importances.json").write_text(json.dumps(
                {"evaluator": "fanova", "seed": 0, "objective": cfg.objectives[0], "importances": mattered}, indent=2))
        if cfg.multi_objective and best is not None:
            pareto_table(study, cfg).to_csv(folder / "pareto_front.csv", index=False)
        skipped, interactive = [], {}
        evaluator = RememberedImportances(optuna.importance.FanovaImportanceEvaluator(seed=0))
        for name, figure in plots(study, cfg, evaluator=evaluator).items():
            if isinstance(figure, str):
                skipped.append(f"{name}: {figure}")
            else:
                interactive[name] = figure
        if interactive:  # each plot as a PNG, and all of them in one page that opens offline
            with pyplot_figures():
                for name, drawn in plots(study, cfg, optuna.visualization.matplotlib, evaluator).items():
                    if not isinstance(drawn, str):
                        save_png(figure_of(drawn), folder / "plots" / f"{name}.png")
            save_html(interactive, folder / "plots" / "study_plots.html", f"study {cfg.study_name}: Optuna's plots")
        if skipped:
            (folder / "plots_skipped.txt").write_text("\n".join(skipped) + "\n")
        mlflow.log_artifacts(str(folder))


def _description(study: optuna.Study, cfg: StudyConfig, best: optuna.trial.FrozenTrial) -> str:
    """The parent run's description in the MLflow UI: what the study is and how to read its children."""
    c = counts(study)
    value = best.user_attrs.get(VAL_ACCURACY)
    chosen = f"trial {best.number}" + (f" (validation accuracy {value:.4f})" if isinstance(value, float) else "")
    return (f"Optuna study **{cfg.study_name}** ({cfg.family}): {c[N_TRIALS_METRIC]} trials, {c[N_COMPLETE_METRIC]} complete, "
            f"{c['n_pruned']} pruned, objective {', '.join(cfg.objectives)} on a {cfg.validation.strategy} validation "
            f"split. Chosen: {chosen}; its params are the tags `{BEST_TAG_PREFIX}*`.\n\n"
            f"Children: `trial N` is one Optuna trial (its state in the tag `{TRIAL_STATE_TAG}`); `refit N sS` retrains the "
            "chosen trial on the whole training file with seed S (the model `signlab promote` registers); "
            "`confirm N sS` retrains a top trial with a new seed on the same split. Test figures are reported, "
            "never used to choose.")


def summary_lines(study: optuna.Study, cfg: StudyConfig, tracking_uri: str, experiment_id: str,
                  parent: str, added: int) -> list[str]:
    """A one-screen summary of the study."""
    c = counts(study)
    lines = [f"study {cfg.study_name}: {added} new trials, {c[N_TRIALS_METRIC]} in all "
             f"({c[N_COMPLETE_METRIC]} complete, {c['n_pruned']} pruned, {c['n_failed']} failed)"]
    best = best_trial(study, cfg)
    if best is None:
        lines.append("no trial completed yet")
    else:
        a = best.user_attrs
        lines.append(f"best trial {best.number}: val_accuracy {a.get(VAL_ACCURACY, float('nan')):.4f}, "
                     f"{TEST_ACCURACY} {a.get(TEST_ACCURACY, float('nan')):.4f} (reported, not used to choose)"
                     + (f", {int(a[N_PARAMS]):,} params" if N_PARAMS in a else ", simulated: no model"))
        lines.append("  params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
        tied, interval = near_ties(study, cfg, best, MlflowClient(tracking_uri))
        if tied and interval:
            lines.append("  " + near_ties_line(tied, interval))
        if cfg.confirm is not None and not cfg.multi_objective:
            from signlab.search.confirm import confirm_lines

            lines += confirm_lines(study, cfg, ranked_trials(study))
        mattered = importances(study, cfg)
        if mattered:
            lines.append("  what mattered (fANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in list(mattered.items())[:5])
                         + importance_caution(c[N_COMPLETE_METRIC]))
        if cfg.multi_objective:
            if cfg.target_val_accuracy is not None:
                reached = a.get(VAL_ACCURACY, 0.0) >= cfg.target_val_accuracy
                lines.append(f"  {'smallest Pareto model reaching' if reached else 'no Pareto model reaches'} "
                             f"target_val_accuracy {cfg.target_val_accuracy}"
                             + ("" if reached else "; shown: the most accurate"))
            lines.append(f"Pareto front ({len(study.best_trials)} trials):")
            lines += ["  " + line for line in pareto_table(study, cfg).round(5).to_string(index=False).splitlines()[:12]]
    page = store.run_page(experiment_id, parent)
    lines.append(f"MLflow: parent run {parent} in experiment {experiment_id}")
    if tracking_uri.startswith(("http://", "https://")):
        lines.append(f"open {redact(tracking_uri).rstrip('/')}/{page}")
    else:  # the UI is wherever someone starts it: the command, then the page at its default address
        lines.append(f"start the UI with `mlflow ui --backend-store-uri {redact(tracking_uri)}` (if none is running), "
                     f"then open http://127.0.0.1:5000/{page}")
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
