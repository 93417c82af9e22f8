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
    FAMILY_TAG,
    IMPORTANCE_PREFIX,
    LATENCY_MS,
    N_PARAMS,
    N_TEST_PARAM,
    N_TRIALS_METRIC,
    NEAR_TIES_TAG,
    OBJECTIVE_METRIC,
    OBJECTIVES_PARAM,
    REFERENCE_ROW_TAG,
    REFIT_RUNS_TAG,
    REFIT_SEED,
    REFIT_TRIAL_TAG,
    ROLE_REPORT,
    ROLE_STUDY,
    ROLE_TAG,
    SEED_PARAM,
    SOURCE_RUN_TAG,
    STUDY_TAG,
    SUBSET_PARAM,
    TEST_ACCURACY,
    TEST_AUG_ACCURACY,
    TEST_F1,
    TRAIN_SECONDS,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
    VAL_ACCURACY,
    VAL_AUG_ACCURACY,
    VAL_FRACTION_PARAM,
    VAL_STRATEGY_PARAM,
    metric_key,
    tag_key,
)
from signlab.errors import UserError
from signlab.files import atomic_path, fill, output_folder
from signlab.models.evaluate import Evaluation, confusion_figure
from signlab.models.intervals import Comparison, Interval
from signlab.runs.references import Reference, best_clean_reference, load_references, watched_test
from signlab.runs.store import mark_classic_ml, use_experiment
from signlab.serving.evidence import Evidence, EvidenceCache, compare, is_quick, run_interval
from signlab.serving.over_seeds import SeedGroup, over_seeds, seeds_data, seeds_table
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
    evidence: Evidence | None = None  # its test predictions, image by image (None: runs that predate them)
    settings: dict[str, str] = field(default_factory=dict)  # a study's pick: its parent run's params
    study_trials: int | None = None  # a study's pick: the trials its study ran
    near_ties: list[int] = field(default_factory=list)  # a study's pick: trials validation does not tell from it

    @property
    def quick(self) -> bool:
        """Trained on a subset or tested on a capped test split: not comparable with published figures."""
        return any(is_quick(r) for r in self.runs)

    def interval(self) -> Interval | None:
        """Its test accuracy's 95% interval over photos (of the mean over seeds for several runs)."""
        if self.evidence is not None:
            return self.evidence.interval()
        return run_interval(self.runs[0]) if len(self.runs) == 1 else None

    @property
    def n_test(self) -> int | None:
        values = [int(r.data.params[N_TEST_PARAM]) for r in self.runs if r.data.params.get(N_TEST_PARAM, "").isdigit()]
        return max(values) if values else None

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
        return len({r.data.params.get(REFIT_SEED, r.data.params.get(SEED_PARAM)) for r in self.runs})

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


def attach_evidence(rows: list[Row], cache: EvidenceCache) -> None:
    """Each row's (and its refit's) test predictions, for intervals and paired comparisons."""
    for row in rows:
        for each in (row, row.refit):
            if each is not None and each.runs:
                each.evidence = cache.evidence(each.runs)


def collect(client: MlflowClient, experiments: list[str] | None = None, study: str | None = None,
            family: str | None = None, top: int = 1) -> list[Row]:
    """Our rows: the `top` trials of each study by validation accuracy (the chosen one with
    its refit and the study's importances), studies best first, then the reference
    reproductions grouped by row (seeds averaged)."""
    ids = _experiment_ids(client, experiments)
    fam = f" and {tag_key(FAMILY_TAG)} = '{family}'" if family else ""
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
        found = client.search_runs(ids, f"{tag_key(REFERENCE_ROW_TAG)} != '' and attributes.status = 'FINISHED'{fam}",
                                   max_results=1000)
        grouped: dict[str, list[Run]] = {}
        for run in found:
            key = run.data.tags[REFERENCE_ROW_TAG]
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
        row = Row(label, run.data.tags.get(FAMILY_TAG, "?"), "study", [run], study=name, trial=number, chosen=rank == 1)
        if rank == 1:
            row.importances = _importances(parent)
            row.settings = dict(parent.data.params)
            trials = parent.data.metrics.get(N_TRIALS_METRIC)
            row.study_trials = None if trials is None else int(trials)
            row.near_ties = [int(n) for n in parent.data.tags.get(NEAR_TIES_TAG, "").split(",") if n.isdigit()]
        refits = _refit_runs(client, parent) if refit_trial == str(number) else []
        if refits:
            row.refit = Row(f"{name} refit of trial {number}", row.family, "refit", refits, study=name, trial=number)
        rows.append(row)
    return rows


def _importances(parent: Run) -> dict[str, float]:
    """The study's fANOVA importances (metrics `importance.<param>` on its parent), largest first."""
    found = {k.removeprefix(IMPORTANCE_PREFIX): v for k, v in parent.data.metrics.items()
             if k.startswith(IMPORTANCE_PREFIX)}
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def _refit_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The finished runs of the study's latest refit (`refit.run_ids` on the parent), primary first."""
    runs = []
    for run_id in filter(None, parent.data.tags.get(REFIT_RUNS_TAG, "").split(",")):
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

    objective = parent.data.params.get(OBJECTIVES_PARAM, "val_accuracy").split(",")[0]
    metric = OBJECTIVE_METRIC.get(objective, VAL_ACCURACY)
    order = "ASC" if metric == N_PARAMS else "DESC"
    trials = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and {tag_key(TRIAL_STATE_TAG)} = 'COMPLETE' "
        f"and {metric_key(metric)} >= 0",
        order_by=[f"{metric_key(metric)} {order}", f"{metric_key(N_PARAMS)} ASC"], max_results=top + 1)
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
    """One line: our best model on validation (its refit's mean where there is one) with its
    interval over photos, against the best published figure that did not watch the test
    split, and the difference. A quick run says so and is set against nothing published."""
    if best is None:
        return "No runs of ours yet."
    model = best.delivered
    test = model.metric(TEST_ACCURACY)
    figure = _prose(test, model.spread(TEST_ACCURACY), model.interval())
    what = (f"**{best.study}**, the refit of its trial {best.trial} ({model.seeds} seeds): "
            f"**{figure}** test accuracy" if model.kind == "refit"
            else f"**{best.model}**: **{figure}** test accuracy")
    if best.quick or model.quick:
        return (f"Quick run: our best model, chosen on validation, is {what}, trained on a subset of "
                f"{_subset(best)} images per letter and tested on {model.n_test or '?'} test images (a capped test "
                "split): a check that the pipeline runs, not comparable with published figures.")
    line = f"Our best model, chosen on validation, is {what}"
    ref = best_clean_reference(family)
    if ref is None or test is None:
        return line + "."
    return (f"{line}, against **{_prose(ref.accuracy)}** for **{ref.model}**, the best published figure "
            f"that did not watch the test split: **{100 * (test - ref.accuracy):+.2f} points**.")


def _subset(row: Row) -> str:
    values = {r.data.params.get(SUBSET_PARAM, "?") for r in row.runs}
    return "/".join(sorted(values))


# ---- tables -----------------------------------------------------------------------------
def _acc(value: float | None, spread: float | None = None, interval: Interval | None = None) -> str:
    """An accuracy in percent, two decimals, with its std over seeds and its 95% interval over
    photos where there are: '99.65 ± 0.07 (99.41–99.83)'."""
    if value is None:
        return ""
    out = f"{100 * value:.2f}" + (f" ± {100 * spread:.2f}" if spread is not None else "")
    return out + (f" ({100 * interval.low:.2f}–{100 * interval.high:.2f})" if interval is not None else "")


def _prose(value: float | None, spread: float | None = None, interval: Interval | None = None) -> str:
    """An accuracy for a sentence: '97.12% ± 0.31 (96.80–97.40)'."""
    text = _acc(value, spread, interval)
    mean, _, rest = text.partition(" ")
    return f"{mean}%" + (f" {rest}" if rest else "")


def _fixed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _range(row: Row | None) -> str:
    values = row.values(TEST_ACCURACY) if row else []
    return f"{100 * min(values):.2f}–{100 * max(values):.2f}" if len(values) > 1 else ""


def _mattered(importances: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in list(importances.items())[:TOP_IMPORTANCES])


def _name(row: Row) -> str:
    return row.model + (" (quick)" if row.quick else "")


def ours_table(ours: list[Row]) -> Table:
    """Our study models: the validation accuracy that chose each, its test accuracy (reported,
    not used to choose), its refit's test accuracy over seeds, and what mattered in the study."""
    heads = ["model", "family", "params", "val acc %", "trial test acc %", "refit test acc %", "refit min–max",
             "seeds", "macro F1", "aug-test acc %", "latency ms", "what mattered (fANOVA)", "runs"]
    rows = []
    for row in (r for r in ours if r.kind == "study"):
        refit = row.refit
        runs = f"trial {row.run_id}" + (f", refit {refit.run_id}" if refit else "")
        rows.append([_name(row), row.family, _fixed(row.params, 0), _acc(row.metric(VAL_ACCURACY)),
                     _acc(row.metric(TEST_ACCURACY), interval=row.interval()),
                     _acc(refit.metric(TEST_ACCURACY), refit.spread(TEST_ACCURACY), refit.interval()) if refit else "",
                     _range(refit), str(refit.seeds) if refit else "", _fixed(row.metric(TEST_F1), 4),
                     _acc(row.metric(TEST_AUG_ACCURACY)), _fixed(row.metric(LATENCY_MS), 2),
                     _mattered(row.importances), runs])
    caption = ("Each study chooses its trial on validation accuracy; the trial's test accuracy is reported, "
               "not used to choose. The refit is the chosen trial retrained on the whole training file once "
               "per seed (the model `signlab promote` registers): mean ± std over seeds, min–max. "
               "In brackets: the 95% interval over photos (the test file's variants of one photo resampled "
               "together), of the mean for several seeds. (quick): trained on a subset or tested on a capped "
               "test split. "
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
        rows.append([_name(row) if row.runs else ref.model, _fixed(row.params, 0), _acc(ref.accuracy), watched_test(ref),
                     str(row.seeds) if row.runs else "",
                     _acc(row.metric(VAL_ACCURACY), row.spread(VAL_ACCURACY)),
                     _acc(test, row.spread(TEST_ACCURACY), row.interval() if row.runs else None),
                     "" if test is None else f"{100 * (test - ref.accuracy):+.2f}",
                     _fixed(row.metric(TEST_F1), 4), _acc(row.metric(TEST_AUG_ACCURACY)),
                     _fixed(row.metric(TRAIN_SECONDS), 0), ref.source, row.run_id])
    caption = ("Published: the test accuracy each source reports. Watched test: \"yes\" where the setup watched "
               "the test split during training, \"maybe\" where the source plots test accuracy per epoch; "
               "those figures are not comparable with ours. Reproduced: our retraining with the published "
               "settings (`signlab reference`), mean ± std over its seeds, with the 95% interval over photos of the "
               "mean; diff: the reproduction minus published, in points.")
    return Table("Published references and our reproductions", heads, rows,
                 {"params", "published acc %", "seeds", "val acc %", "test acc %", "diff (pts)",
                  "macro F1", "aug-test acc %", "train s"}, caption)


@dataclass
class Paired:
    """Our best model against another on the same test images."""

    against: str
    kind: str  # "reference" or "champion"
    comparison: Comparison | None
    run_ids: list[str] = field(default_factory=list)


def paired_comparisons(ours: list[Row], best: Row | None, champion: tuple[str, Row] | None) -> list[Paired]:
    """Our best model (its refit where there is one) against each reproduced reference row and
    the current champion, paired on the same test images."""
    if best is None:
        return []
    model = best.delivered
    found = [Paired(row.model, "reference", compare(model.evidence, row.evidence), [r.info.run_id for r in row.runs])
             for row in ours if row.kind == "reference"]
    if champion is not None:
        label, row = champion
        if {r.info.run_id for r in row.runs} != {r.info.run_id for r in model.runs}:
            found.append(Paired(label, "champion", compare(model.evidence, row.evidence), [r.info.run_id for r in row.runs]))
    return found


def paired_table(best: Row | None, found: list[Paired]) -> Table:
    """The paired comparisons as a table: difference, interval and verdict."""
    heads = ["our best against", "images", "photos", "difference (pts)", "95% interval (pts)", "verdict"]
    rows = []
    for item in found:
        c = item.comparison
        if c is None:
            rows.append([item.against, "", "", "", "", "not comparable (no predictions on shared test images)"])
            continue
        d = c.difference
        rows.append([item.against, f"{c.n_images:,}", f"{c.n_groups:,}", f"{100 * d.estimate:+.2f}",
                     f"{100 * d.low:+.2f} to {100 * d.high:+.2f}", c.verdict])
    name = best.delivered.model if best is not None else "our best model"
    caption = (f"{name} against each reproduced reference (mean over its seeds) and the registry's champion, on the "
               "same test images: the difference in accuracy with its 95% interval, resampling photos for both models "
               "at once. 'no measurable difference': the interval holds 0.")
    return Table("Paired comparisons", heads, rows, {"images", "photos", "difference (pts)"}, caption)


def champion_row(client: MlflowClient, family: str | None) -> tuple[str, Row] | None:
    """The registry's champion for `family` (cnn where none is given), as a row of its source run."""
    from signlab.contract import CHAMPION, MODEL_NAMES

    name = MODEL_NAMES.get(family or "cnn")
    if name is None:
        return None
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
        run = client.get_run(version.run_id or version.tags.get(SOURCE_RUN_TAG, ""))
    except Exception:  # noqa: BLE001 - no registry, no model, no alias, or its run is gone: nothing to compare
        return None
    return f"{name}@{CHAMPION} (v{version.version})", Row(f"{name} v{version.version}", family or "cnn", "champion", [run])


def report_data(ours: list[Row], best: Row | None, lead: str, found: list[Paired], family: str | None,
                stamp: str, uri: str, groups: list[SeedGroup] | None = None) -> dict:
    """The report for machines (`report.json`): headline, our models, references, comparisons."""

    def figure(row: Row) -> dict:
        interval = row.interval()
        return {"name": row.model, "run_id": row.runs[0].info.run_id if len(row.runs) == 1 else None,
                "run_ids": [r.info.run_id for r in row.runs], "seeds": row.seeds,
                TEST_ACCURACY: row.metric(TEST_ACCURACY), "test_std": row.spread(TEST_ACCURACY),
                "test_ci_low": interval.low if interval else None, "test_ci_high": interval.high if interval else None,
                "val_accuracy": row.metric(VAL_ACCURACY), N_TEST_PARAM: row.n_test, "quick": row.quick}

    def paired(c: Comparison | None) -> dict | None:
        if c is None:
            return None
        return {"difference": c.difference.estimate, "ci_low": c.difference.low, "ci_high": c.difference.high,
                "verdict": c.verdict, "n_images": c.n_images, "n_groups": c.n_groups}

    by_model = {p.against: p for p in found}
    reproduced = {row.reference.key: row for row in ours if row.reference is not None}
    references = []
    for ref in load_references():
        if family and ref.family != family:
            continue
        row = reproduced.get(ref.key)
        references.append({"key": ref.key, "model": ref.model, "family": ref.family, "published": ref.accuracy,
                           "watched_test": watched_test(ref), "reproduction": figure(row) if row else None,
                           "paired_with_our_best": paired(by_model[row.model].comparison)
                           if row and row.model in by_model else None})
    ours_out = []
    for row in (r for r in ours if r.kind == "study"):
        entry = figure(row) | {"study": row.study, "trial": row.trial, "chosen": row.chosen,
                               "near_ties": row.near_ties if row.chosen else None}
        entry["refit"] = figure(row.refit) if row.refit else None
        ours_out.append(entry)
    delivered = best.delivered if best else None
    return {
        "generated": stamp, "tracking_uri": uri,
        "headline": {"text": lead.replace("**", ""), "quick": bool(best and (best.quick or best.delivered.quick)),
                     "model": figure(delivered) if delivered else None},
        "ours": ours_out, "over_seeds": seeds_data(groups or []), "references": references,
        "champion": next(({"name": p.against, "paired_with_our_best": paired(p.comparison)}
                          for p in found if p.kind == "champion"), None),
    }


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
    cache = EvidenceCache(client)  # each run's predictions downloaded once
    attach_evidence(ours, cache)
    best = best_row(ours)
    champion = champion_row(client, family or (best.family if best else None))
    if champion is not None:
        attach_evidence([champion[1]], cache)
    found = paired_comparisons(ours, best, champion)
    groups = over_seeds(ours)
    tables = [ours_table(ours), *([seeds_table(groups, _acc)] if groups else []), references_table(ours, family),
              paired_table(best, found)]
    figures, notes = _best_model_figures(client, best)
    figures = [accuracy_chart(ours, family), params_chart(ours, family), *figures]
    notes = _notes(family) + _tie_notes(ours) + notes
    output_folder(output)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lead = headline(best, family)
    intro = _intro(ours, stamp, redact(mlflow.get_tracking_uri()))
    md, page, machine = output / "report.md", output / "report.html", output / "report.json"
    data = report_data(ours, best, lead, found, family, stamp, redact(mlflow.get_tracking_uri()), groups)
    # all three replaced, or none
    with atomic_path(md) as md_tmp, atomic_path(page) as page_tmp, atomic_path(machine) as json_tmp:
        fill(md_tmp, md, markdown_page(lead, intro, tables, notes))
        fill(page_tmp, page, html_page(lead, intro, tables, notes, figures))
        fill(json_tmp, machine, json.dumps(_finite(data), indent=1, allow_nan=False, default=_json_default))
    return [md, page, machine]


def _finite(value: object) -> object:
    """NaN and infinities as null: report.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


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
    splits = sorted({f"{r.data.params[VAL_STRATEGY_PARAM]} {100 * float(r.data.params.get(VAL_FRACTION_PARAM, 0)):.0f}%"
                     for row in ours for r in row.runs if VAL_STRATEGY_PARAM in r.data.params})
    held = f" ({', '.join(splits)})" if splits else ""
    return (f"Generated {stamp} from `{uri}`. Models are chosen on a validation split held out from the "
            f"training file{held}; test figures are reported, never used to choose. Published figures come "
            "from `src/signlab/runs/references.yaml`. Accuracies are in percent; ± is the standard deviation over seeds; "
            "brackets hold the 95% interval over photos: the test file's ~7,000 images are about 20 variants each of "
            "a few hundred photos, so photos, not images, are resampled.")


def _tie_notes(ours: list[Row]) -> list[str]:
    """A note for each study whose pick validation does not tell from other trials (the study's
    `signlab.near_ties`, written when it chose)."""
    notes = []
    for row in ours:
        if row.chosen and row.near_ties:
            trials = ", ".join(str(n) for n in row.near_ties)
            notes.append(f"{row.study}: validation does not tell its pick, trial {row.trial}, from trial"
                         f"{'s' if len(row.near_ties) > 1 else ''} {trials} (inside the pick's 95% interval over "
                         "validation photos); `confirm:` in the study file trains the top trials again to choose.")
    return notes


def _notes(family: str | None) -> list[str]:
    """The notes on the published rows shown."""
    return [f"{r.model}: {r.note}." for r in load_references() if r.note and (family is None or r.family == family)]


def run_report(output: Path, experiments: list[str] | None = None, study: str | None = None,
               family: str | None = None, top: int = 1, log_experiment: str = "reports",
               launched: str | None = None) -> list[Path]:
    """Write the report and log its files as artifacts of a `report` run.

    Args:
        output: the folder for report.md, report.html and report.json.
        experiments: only these MLflow experiments (default: all).
        study: only this study.
        family: only cnn or mlp.
        top: trials per study, best first by validation accuracy.
        log_experiment: the experiment of the `report` run.
        launched: the run `mlflow run . -e report` started, logged to instead.

    Returns:
        The files written.
    """
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
