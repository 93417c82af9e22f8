"""The report: our best runs against the published reference models, as Markdown and one
self-contained HTML page, logged to MLflow. It only reads what tracking wrote.

Ours: each study's chosen trial (chosen by validation accuracy, never by test) with its
refit (the chosen trial retrained on the whole training file once per seed: mean ± std,
min-max) and what mattered in the study (fANOVA importances); and the reference
reproductions (`signlab reference`), with mean ± std where a row ran with several seeds.
Theirs: runs/references.yaml. The page opens with one headline: our best model against
the best published figure whose setup did not watch the test split.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import plotly.graph_objects as go
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from signlab.contract import (
    BEST_RUN_TAG,
    LATENCY_MS,
    N_PARAMS,
    OBJECTIVE_METRIC,
    REFIT_SEED,
    REFIT_TRIAL_TAG,
    ROLE_REPORT,
    ROLE_STUDY,
    ROLE_TAG,
    STUDY_TAG,
    TEST_ACCURACY,
    TEST_AUG_ACCURACY,
    TEST_F1,
    TRIAL_NUMBER_TAG,
    VAL_ACCURACY,
    VAL_AUG_ACCURACY,
)
from signlab.errors import UserError
from signlab.files import atomic_path, output_folder
from signlab.models.evaluate import Evaluation, confusion_figure
from signlab.runs.references import Reference, best_clean_reference, load_references, watched_test
from signlab.runs.store import mark_classic_ml, use_experiment
from signlab.serving.report_charts import accuracy_chart, f1_chart, params_chart
from signlab.serving.report_page import Table, html_page, markdown_page
from signlab.stores import redact

TOP_IMPORTANCES = 5


@dataclass
class Row:
    """One model of ours (one run, or several seeds of one configuration), or a published one."""

    model: str
    family: str
    kind: str  # "study", "refit", "reference", "published"
    runs: list[Run] = field(default_factory=list)
    reference: Reference | None = None
    study: str | None = None
    trial: int | None = None
    chosen: bool = False  # the trial its study chose
    refit: Row | None = None  # the chosen trial retrained on the whole training file, per seed
    importances: dict[str, float] = field(default_factory=dict)

    def values(self, key: str) -> list[float]:
        return [r.data.metrics[key] for r in self.runs if key in r.data.metrics]

    def metric(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.fmean(values) if values else None

    def spread(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def seeds(self) -> int:
        return len({r.data.params.get(REFIT_SEED, r.data.params.get("seed")) for r in self.runs})

    @property
    def params(self) -> int | None:
        ours = self.metric(N_PARAMS)
        return int(ours) if ours is not None else (self.reference.params if self.reference else None)

    @property
    def run_id(self) -> str:
        return ", ".join(r.info.run_id[:8] for r in self.runs)

    @property
    def delivered(self) -> Row:
        """The model this row stands for: its refit where there is one."""
        return self.refit or self


def _experiment_ids(client: MlflowClient, names: list[str] | None) -> list[str]:
    if not names:
        return [e.experiment_id for e in client.search_experiments()]
    ids = []
    for name in names:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise UserError(f"no experiment named {name!r} at {redact(mlflow.get_tracking_uri())}")
        ids.append(found.experiment_id)
    return ids


def collect(client: MlflowClient, experiments: list[str] | None = None, study: str | None = None,
            family: str | None = None, top: int = 1) -> list[Row]:
    """Our rows: the `top` trials of each study by validation accuracy (the chosen one with
    its refit and the study's importances), studies best first, then the reference
    reproductions grouped by row (seeds averaged)."""
    ids = _experiment_ids(client, experiments)
    fam = f" and tags.family = '{family}'" if family else ""
    studies: list[list[Row]] = []
    parents = client.search_runs(ids, f"tags.`{ROLE_TAG}` = '{ROLE_STUDY}'{fam}", max_results=1000)
    for parent in parents:
        name = parent.data.tags.get(STUDY_TAG, parent.info.run_name)
        if not study or name == study:
            studies.append(_study_rows(client, parent, name, top))
    rows = [row for group in sorted((g for g in studies if g), key=lambda g: _validation_key(g[0]), reverse=True)
            for row in group]
    if study is None:
        refs = {r.reproduce: r for r in load_references() if r.reproduce}
        found = client.search_runs(ids, f"tags.reference != '' and attributes.status = 'FINISHED'{fam}",
                                   max_results=1000)
        grouped: dict[str, list[Run]] = {}
        for run in found:
            key = run.data.tags["reference"]
            if key in refs and TEST_ACCURACY in run.data.metrics:
                grouped.setdefault(key, []).append(run)
        for key, runs in grouped.items():
            rows.append(Row(refs[key].model, refs[key].family, "reference", runs, reference=refs[key]))
    return rows


def _study_rows(client: MlflowClient, parent: Run, name: str, top: int) -> list[Row]:
    """One study's rows, its chosen trial first, carrying the refit and the importances."""
    rows = []
    refit_trial = parent.data.tags.get(REFIT_TRIAL_TAG)
    for rank, run in enumerate(_ranked_trials(client, parent, top), start=1):
        number = int(run.data.tags.get(TRIAL_NUMBER_TAG, -1))
        label = f"{name} trial {number}" + (" (best)" if rank == 1 else f" (#{rank})")
        row = Row(label, run.data.tags.get("family", "?"), "study", [run], study=name, trial=number, chosen=rank == 1)
        if rank == 1:
            row.importances = _importances(parent)
        refits = _refit_runs(client, parent) if refit_trial == str(number) else []
        if refits:
            row.refit = Row(f"{name} refit of trial {number}", row.family, "refit", refits, study=name, trial=number)
        rows.append(row)
    return rows


def _importances(parent: Run) -> dict[str, float]:
    """The study's fANOVA importances (metrics `importance.<param>` on its parent), largest first."""
    found = {k.removeprefix("importance."): v for k, v in parent.data.metrics.items() if k.startswith("importance.")}
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def _refit_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The finished runs of the study's latest refit (`refit.run_ids` on the parent), primary first."""
    runs = []
    for run_id in filter(None, parent.data.tags.get("refit.run_ids", "").split(",")):
        try:
            run = client.get_run(run_id)
        except mlflow.exceptions.MlflowException:  # deleted since
            continue
        if run.info.status == "FINISHED" and TEST_ACCURACY in run.data.metrics:
            runs.append(run)
    return runs


def _ranked_trials(client: MlflowClient, parent: Run, top: int) -> list[Run]:
    """The study's best trial (as the study itself chose it: the parent's `best.mlflow_run_id`),
    then the next best by the study's first objective, all validation metrics."""

    objective = parent.data.params.get("objectives", "val_accuracy").split(",")[0]
    metric = OBJECTIVE_METRIC.get(objective, VAL_ACCURACY)
    order = "ASC" if metric == N_PARAMS else "DESC"
    trials = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.trial_state = 'COMPLETE' "
        f"and metrics.{metric} >= 0",
        order_by=[f"metrics.{metric} {order}", "metrics.n_params ASC"], max_results=top + 1)
    best_id = parent.data.tags.get(BEST_RUN_TAG)
    best = [client.get_run(best_id)] if best_id and best_id != "None" else []
    return (best + [r for r in trials if r.info.run_id != best_id])[:top]


# ---- choosing and comparing -------------------------------------------------------------
def _validation_key(row: Row) -> tuple[float, float, int]:
    """Validation accuracy, ties broken by the perturbed validation copy, then fewer parameters."""
    return (row.metric(VAL_ACCURACY) or 0.0, row.metric(VAL_AUG_ACCURACY) or 0.0, -(row.params or 0))


def best_row(ours: list[Row]) -> Row | None:
    """Our best model on validation data, never test: among the trials the studies chose
    (the reference reproductions where there is no study), the best by `_validation_key`."""
    chosen = [r for r in ours if r.chosen] or [r for r in ours if r.kind == "reference"]
    scored = [r for r in chosen if r.metric(VAL_ACCURACY) is not None]
    return max(scored, key=_validation_key, default=None)


def headline(best: Row | None, family: str | None = None) -> str:
    """One line: our best model on validation (its refit's mean where there is one) against
    the best published figure that did not watch the test split, and the difference."""
    if best is None:
        return "No runs of ours yet."
    model = best.delivered
    test = model.metric(TEST_ACCURACY)
    what = (f"**{best.study}**, the refit of its trial {best.trial} ({model.seeds} seeds): "
            f"**{_prose(test, model.spread(TEST_ACCURACY))}** test accuracy" if model.kind == "refit"
            else f"**{best.model}**: **{_prose(test, best.spread(TEST_ACCURACY))}** test accuracy")
    line = f"Our best model, chosen on validation, is {what}"
    ref = best_clean_reference(family)
    if ref is None or test is None:
        return line + "."
    return (f"{line}, against **{_prose(ref.accuracy)}** for **{ref.model}**, the best published figure "
            f"that did not watch the test split: **{100 * (test - ref.accuracy):+.2f} points**.")


# ---- tables -----------------------------------------------------------------------------
def _acc(value: float | None, spread: float | None = None) -> str:
    """An accuracy in percent, two decimals, with its std over seeds where there is one."""
    if value is None:
        return ""
    return f"{100 * value:.2f}" + (f" ± {100 * spread:.2f}" if spread is not None else "")


def _prose(value: float | None, spread: float | None = None) -> str:
    """An accuracy for a sentence: '97.12% ± 0.31'."""
    mean, _, sd = _acc(value, spread).partition(" ± ")
    return f"{mean}%" + (f" ± {sd}" if sd else "")


def _fixed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _range(row: Row | None) -> str:
    values = row.values(TEST_ACCURACY) if row else []
    return f"{100 * min(values):.2f}–{100 * max(values):.2f}" if len(values) > 1 else ""


def _mattered(importances: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in list(importances.items())[:TOP_IMPORTANCES])


def ours_table(ours: list[Row]) -> Table:
    """Our study models: the validation accuracy that chose each, its test accuracy (reported,
    not used to choose), its refit's test accuracy over seeds, and what mattered in the study."""
    heads = ["model", "family", "params", "val acc %", "trial test acc %", "refit test acc %", "refit min–max",
             "seeds", "macro F1", "aug-test acc %", "latency ms", "what mattered (fANOVA)", "runs"]
    rows = []
    for row in (r for r in ours if r.kind == "study"):
        refit = row.refit
        runs = f"trial {row.run_id}" + (f", refit {refit.run_id}" if refit else "")
        rows.append([row.model, row.family, _fixed(row.params, 0), _acc(row.metric(VAL_ACCURACY)),
                     _acc(row.metric(TEST_ACCURACY)),
                     _acc(refit.metric(TEST_ACCURACY), refit.spread(TEST_ACCURACY)) if refit else "",
                     _range(refit), str(refit.seeds) if refit else "", _fixed(row.metric(TEST_F1), 4),
                     _acc(row.metric(TEST_AUG_ACCURACY)), _fixed(row.metric(LATENCY_MS), 2),
                     _mattered(row.importances), runs])
    caption = ("Each study chooses its trial on validation accuracy; the trial's test accuracy is reported, "
               "not used to choose. The refit is the chosen trial retrained on the whole training file once "
               "per seed (the model `signlab promote` registers): mean ± std over seeds, min–max. "
               "Macro F1, aug-test accuracy and latency are the trial's. What mattered: fANOVA importance "
               f"of each hyperparameter to the study's objective (top {TOP_IMPORTANCES}, summing to 1 over all).")
    return Table("Our models", heads, rows, {"params", "val acc %", "trial test acc %", "refit test acc %",
                                              "refit min–max", "seeds", "macro F1", "aug-test acc %", "latency ms"},
                 caption)


def references_table(ours: list[Row], family: str | None = None) -> Table:
    """Every published reference, with our reproduction beside it where we ran one."""
    heads = ["model", "params", "published acc %", "watched test", "seeds",
             "val acc %", "test acc %", "diff (pts)", "macro F1", "aug-test acc %", "train s", "source", "runs"]
    reproduced = {row.reference.key: row for row in ours if row.reference is not None}
    rows = []
    for ref in load_references():
        if family and ref.family != family:
            continue
        row = reproduced.get(ref.key) or Row(ref.model, ref.family, "published", reference=ref)
        test = row.metric(TEST_ACCURACY)
        rows.append([ref.model, _fixed(row.params, 0), _acc(ref.accuracy), watched_test(ref),
                     str(row.seeds) if row.runs else "",
                     _acc(row.metric(VAL_ACCURACY), row.spread(VAL_ACCURACY)),
                     _acc(test, row.spread(TEST_ACCURACY)),
                     "" if test is None else f"{100 * (test - ref.accuracy):+.2f}",
                     _fixed(row.metric(TEST_F1), 4), _acc(row.metric(TEST_AUG_ACCURACY)),
                     _fixed(row.metric("train_seconds"), 0), ref.source, row.run_id])
    caption = ("Published: the test accuracy each source reports. Watched test: \"yes\" where the setup watched "
               "the test split during training, \"maybe\" where the source plots test accuracy per epoch; "
               "those figures are not comparable with ours. Reproduced: our retraining with the published "
               "settings (`signlab reference`), mean ± std over its seeds; diff: ours minus published, in points.")
    return Table("Published references and our reproductions", heads, rows,
                 {"params", "published acc %", "seeds", "val acc %", "test acc %", "diff (pts)",
                  "macro F1", "aug-test acc %", "train s"}, caption)


def class_report(client: MlflowClient, run: Run) -> dict | None:
    try:
        path = client.download_artifacts(run.info.run_id, "classification_report.json")
    except Exception:  # an older run, or artifacts gone
        return None
    return json.loads(Path(path).read_text())


# ---- the page ---------------------------------------------------------------------------
def write_report(client: MlflowClient, output: Path, experiments: list[str] | None = None,
                 study: str | None = None, family: str | None = None, top: int = 1) -> list[Path]:
    """Write report.md and report.html into `output`; the paths written."""
    ours = collect(client, experiments, study, family, top)
    tables = [ours_table(ours), references_table(ours, family)]
    best = best_row(ours)
    figures, notes = _best_model_figures(client, best)
    figures = [accuracy_chart(ours, family), params_chart(ours, family), *figures]
    notes = _notes(family) + notes
    output_folder(output)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lead = headline(best, family)
    intro = _intro(ours, stamp, redact(mlflow.get_tracking_uri()))
    md, page = output / "report.md", output / "report.html"
    with atomic_path(md) as md_tmp, atomic_path(page) as page_tmp:  # both replaced, or neither
        md_tmp.write_text(markdown_page(lead, intro, tables, notes))
        page_tmp.write_text(html_page(lead, intro, tables, notes, figures))
    return [md, page]


def _best_model_figures(client: MlflowClient, best: Row | None) -> tuple[list[go.Figure], list[str]]:
    """Per-letter F1 and the confusion matrix of our best model (its primary refit where there
    is one: the model users get), and a note where its run predates them."""
    if best is None:
        return [], []
    model = best.delivered
    report = class_report(client, model.runs[0])
    seed = model.runs[0].data.params.get(REFIT_SEED)
    title = f"{model.model} (seed {seed})" if model.kind == "refit" else best.model
    if not report:
        return [], []
    if "confusion" not in report:
        return [f1_chart(report, title)], ["The best run predates confusion matrices in classification_report.json; "
                                           "see its confusion_matrix.html artifact."]
    first = model.runs[0].data.metrics
    ev = Evaluation(first.get(TEST_ACCURACY, 0.0), first.get(TEST_F1, 0.0), 0.0, {},
                    np.asarray(report["confusion"]))
    return [f1_chart(report, title), confusion_figure(ev, f"{title}, test split")], []


def _intro(ours: list[Row], stamp: str, uri: str) -> str:
    splits = sorted({f"{r.data.params['val_strategy']} {100 * float(r.data.params.get('val_fraction', 0)):.0f}%"
                     for row in ours for r in row.runs if "val_strategy" in r.data.params})
    held = f" ({', '.join(splits)})" if splits else ""
    return (f"Generated {stamp} from `{uri}`. Models are chosen on a validation split held out from the "
            f"training file{held}; test figures are reported, never used to choose. Published figures come "
            "from `src/signlab/runs/references.yaml`. Accuracies are in percent; ± is the standard deviation over seeds.")


def _notes(family: str | None) -> list[str]:
    """The notes on the published rows shown."""
    return [f"{r.model}: {r.note}." for r in load_references() if r.note and (family is None or r.family == family)]


def run_report(output: Path, experiments: list[str] | None = None, study: str | None = None,
               family: str | None = None, top: int = 1, log_experiment: str = "reports",
               launched: str | None = None) -> list[Path]:
    """Write the report and log both files as artifacts of a `report` run (`launched`: the
    run `mlflow run . -e report` started, logged to instead)."""
    client = MlflowClient()
    paths = write_report(client, output, experiments, study, family, top)
    if launched:
        start = {"run_id": launched, "tags": {ROLE_TAG: ROLE_REPORT}}
    else:
        start = {"experiment_id": use_experiment(log_experiment), "run_name": "report",
                 "tags": {ROLE_TAG: ROLE_REPORT}}
    with mlflow.start_run(**start) as run:
        mark_classic_ml(mlflow.get_tracking_uri(), run.info.experiment_id)
        mlflow.log_params({"experiments": ",".join(experiments or []) or "all", "study": study or "all",
                           "family": family or "all", "top": top})
        for path in paths:
            mlflow.log_artifact(str(path))
    return paths
