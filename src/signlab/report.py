"""The report: our best runs against the published reference models, as Markdown and one
self-contained HTML page, logged to MLflow. It only reads what tracking wrote.

Ours: each study's chosen trial (chosen by validation accuracy, never by test) with its
refit (the chosen trial retrained on the whole training file once per seed: mean ± std,
min-max) and what mattered in the study (fANOVA importances); and the reference
reproductions (`signlab reference`), with mean ± std where a row ran with several seeds.
Theirs: studies/references.yaml. The page opens with one headline: our best model against
the best published figure whose setup did not watch the test split.
"""

from __future__ import annotations

import html as h
import json
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import plotly.graph_objects as go
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from signlab.atomic import atomic_write
from signlab.errors import UserError
from signlab.evaluate import Evaluation, confusion_figure
from signlab.labels import LETTERS
from signlab.references import Reference, load_references
from signlab.storage import redact

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
        return len({r.data.params.get("refit_seed", r.data.params.get("seed")) for r in self.runs})

    @property
    def params(self) -> int | None:
        ours = self.metric("n_params")
        return int(ours) if ours is not None else (self.reference.params if self.reference else None)

    @property
    def run_id(self) -> str:
        return ", ".join(r.info.run_id[:8] for r in self.runs)

    @property
    def delivered(self) -> Row:
        """The model this row stands for: its refit where there is one."""
        return self.refit if self.refit and self.refit.runs else self


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
    parents = client.search_runs(ids, f"tags.`signlab.role` = 'study'{fam}", max_results=1000)
    for parent in parents:
        name = parent.data.tags.get("study", parent.info.run_name)
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
            if key in refs and "test_accuracy" in run.data.metrics:
                grouped.setdefault(key, []).append(run)
        for key, runs in grouped.items():
            rows.append(Row(refs[key].model, refs[key].family, "reference", runs, reference=refs[key]))
    return rows


def _study_rows(client: MlflowClient, parent: Run, name: str, top: int) -> list[Row]:
    """One study's rows, its chosen trial first, carrying the refit and the importances."""
    rows = []
    refit_trial = parent.data.tags.get("refit.trial_number")
    for rank, run in enumerate(_ranked_trials(client, parent, top), start=1):
        number = int(run.data.tags.get("trial_number", -1))
        label = f"{name} trial {number}" + (" (best)" if rank == 1 else f" (#{rank})")
        row = Row(label, run.data.tags.get("family", "?"), "study", [run], study=name, trial=number, chosen=rank == 1)
        if rank == 1:
            row.importances = _importances(parent)
        if refit_trial == str(number):
            row.refit = Row(f"{name} refit of trial {number}", row.family, "refit", _refit_runs(client, parent),
                            study=name, trial=number)
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
        if run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics:
            runs.append(run)
    return runs


def _ranked_trials(client: MlflowClient, parent: Run, top: int) -> list[Run]:
    """The study's best trial (as the study itself chose it: the parent's `best.mlflow_run_id`),
    then the next best by the study's first objective, all validation metrics."""
    from signlab.study import OBJECTIVE_METRIC

    objective = parent.data.params.get("objectives", "val_accuracy").split(",")[0]
    metric = OBJECTIVE_METRIC.get(objective, "final_val_accuracy")
    order = "ASC" if metric == "n_params" else "DESC"
    trials = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.trial_state = 'COMPLETE' "
        f"and metrics.{metric} >= 0",
        order_by=[f"metrics.{metric} {order}", "metrics.n_params ASC"], max_results=top + 1)
    best_id = parent.data.tags.get("best.mlflow_run_id")
    best = [client.get_run(best_id)] if best_id and best_id != "None" else []
    return (best + [r for r in trials if r.info.run_id != best_id])[:top]


# ---- choosing and comparing -------------------------------------------------------------
def _validation_key(row: Row) -> tuple[float, float, int]:
    """Validation accuracy, ties broken by the perturbed validation copy, then fewer parameters."""
    return (row.metric("final_val_accuracy") or 0.0, row.metric("final_val_aug_accuracy") or 0.0, -(row.params or 0))


def best_row(ours: list[Row]) -> Row | None:
    """Our best model on validation data, never test: among the trials the studies chose
    (the reference reproductions where there is no study), the best by `_validation_key`."""
    chosen = [r for r in ours if r.chosen] or [r for r in ours if r.kind == "reference"]
    scored = [r for r in chosen if r.metric("final_val_accuracy") is not None]
    return max(scored, key=_validation_key, default=None)


def watched_test(ref: Reference) -> str:
    """'yes' for a setup that watched the test split while training (`tuned_on_test`), 'maybe'
    where its note says the test split may have been watched, else ''."""
    if ref.tuned_on_test:
        return "yes"
    return "maybe" if ref.note and "watched" in ref.note else ""


def best_clean_reference(family: str | None = None) -> Reference | None:
    """The best published figure whose setup did not watch the test split."""
    clean = [r for r in load_references() if not watched_test(r) and (family is None or r.family == family)]
    return max(clean, key=lambda r: r.accuracy, default=None)


def headline(best: Row | None, family: str | None = None) -> str:
    """One line: our best model on validation (its refit's mean where there is one) against
    the best published figure that did not watch the test split, and the difference."""
    if best is None:
        return "No runs of ours yet."
    model = best.delivered
    test = model.metric("test_accuracy")
    what = (f"**{best.study}**, the refit of its trial {best.trial} ({model.seeds} seeds): "
            f"**{_prose(test, model.spread('test_accuracy'))}** test accuracy" if model.kind == "refit"
            else f"**{best.model}**: **{_prose(test, best.spread('test_accuracy'))}** test accuracy")
    line = f"Our best model, chosen on validation, is {what}"
    ref = best_clean_reference(family)
    if ref is None or test is None:
        return line + "."
    return (f"{line}, against **{_prose(ref.accuracy)}** for **{ref.model}**, the best published figure "
            f"that did not watch the test split: **{100 * (test - ref.accuracy):+.2f} points**.")


# ---- tables -----------------------------------------------------------------------------
@dataclass
class Table:
    """A titled table of formatted cells; `right` names the numeric (right-aligned) columns."""

    title: str
    heads: list[str]
    rows: list[list[str]]
    right: set[str]
    caption: str = ""
    muted: tuple[str, ...] = ("runs",)  # shown small and grey
    lists: tuple[str, ...] = ("runs", "what mattered (fANOVA)", "source")  # comma-separated items, kept whole

    def column(self, head: str) -> list[str]:
        i = self.heads.index(head)
        return [row[i] for row in self.rows]


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
    values = row.values("test_accuracy") if row else []
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
        refit = row.refit if row.refit and row.refit.runs else None
        runs = f"trial {row.run_id}" + (f", refit {refit.run_id}" if refit else "")
        rows.append([row.model, row.family, _fixed(row.params, 0), _acc(row.metric("final_val_accuracy")),
                     _acc(row.metric("test_accuracy")),
                     _acc(refit.metric("test_accuracy"), refit.spread("test_accuracy")) if refit else "",
                     _range(refit), str(refit.seeds) if refit else "", _fixed(row.metric("test_f1_macro"), 4),
                     _acc(row.metric("test_aug_accuracy")), _fixed(row.metric("latency_ms"), 2),
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
        test = row.metric("test_accuracy")
        rows.append([ref.model, _fixed(row.params, 0), _acc(ref.accuracy), watched_test(ref),
                     str(row.seeds) if row.runs else "",
                     _acc(row.metric("final_val_accuracy"), row.spread("final_val_accuracy")),
                     _acc(test, row.spread("test_accuracy")),
                     "" if test is None else f"{100 * (test - ref.accuracy):+.2f}",
                     _fixed(row.metric("test_f1_macro"), 4), _acc(row.metric("test_aug_accuracy")),
                     _fixed(row.metric("train_seconds"), 0), ref.source, row.run_id])
    caption = ("Published: the test accuracy each source reports. Watched test: \"yes\" where the setup watched "
               "the test split during training, \"maybe\" where the source plots test accuracy per epoch; "
               "those figures are not comparable with ours. Reproduced: our retraining with the published "
               "settings (`signlab reference`), mean ± std over its seeds; diff: ours minus published, in points.")
    return Table("Published references and our reproductions", heads, rows,
                 {"params", "published acc %", "seeds", "val acc %", "test acc %", "diff (pts)",
                  "macro F1", "aug-test acc %", "train s"}, caption)


def markdown(table: Table) -> str:
    """A Markdown table, numeric columns right-aligned."""
    if not table.rows:
        return "(no rows)\n"
    out = ["| " + " | ".join(table.heads) + " |",
           "|" + "|".join("---:" if head in table.right else "---" for head in table.heads) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table.rows]
    return "\n".join(out) + "\n"


# ---- charts -----------------------------------------------------------------------------
OURS, REFIT, TRIAL, PUBLISHED = "#1f6feb", "#2da44e", "#d4761c", "#6e7781"


def _ours_points(row: Row, name: str, color: str, symbol: str, legend: bool) -> list[go.Scatter]:
    """A mean with its std as an error bar, and each seed as a small dot, on the row's line."""
    values = [100 * v for v in row.values("test_accuracy")]
    if not values:
        return []
    sd = 100 * (row.spread("test_accuracy") or 0.0)
    traces = [go.Scatter(x=[statistics.fmean(values)], y=[row.model if row.kind != "refit" else _line_name(row)],
                         mode="markers", name=name, legendgroup=name, showlegend=legend,
                         marker={"color": color, "size": 12, "symbol": symbol, "line": {"width": 1, "color": "white"}},
                         error_x={"type": "data", "array": [sd], "visible": len(values) > 1, "color": color,
                                  "thickness": 2, "width": 6},
                         hovertemplate=f"%{{y}}: %{{x:.2f}}% (mean of {len(values)}"
                                       f"{'' if len(values) == 1 else f', ± {sd:.2f}'})<extra>{name}</extra>")]
    if len(values) > 1:
        traces.append(go.Scatter(x=values, y=[traces[0].y[0]] * len(values), mode="markers", name="single seeds",
                                 legendgroup="seeds", showlegend=False,
                                 marker={"color": color, "size": 6, "opacity": 0.55, "symbol": "line-ns-open",
                                         "line": {"width": 2, "color": color}},
                                 hovertemplate="%{y}, one seed: %{x:.2f}%<extra></extra>"))
    return traces


def _line_name(row: Row) -> str:
    """The chart line of a study: its chosen trial and refit share it."""
    return f"{row.study} (trial {row.trial})"


def accuracy_chart(ours: list[Row], family: str | None = None) -> go.Figure:
    """Test accuracy per model, one line each: ours as mean ± std over seeds (each seed a tick),
    beside the published figure."""
    fig = go.Figure()
    legend: set[str] = set()

    def add(traces: list[go.Scatter]) -> None:
        for trace in traces:
            trace.showlegend = trace.showlegend is not False and trace.name not in legend
            legend.add(trace.name)
            fig.add_trace(trace)

    for row in (r for r in ours if r.kind == "study"):
        trial = Row(_line_name(row), row.family, "study", row.runs)
        add(_ours_points(trial, "our study's chosen trial", TRIAL, "square", True))
        if row.refit and row.refit.runs:
            add(_ours_points(row.refit, "our refit, mean ± std", REFIT, "circle", True))
    reproduced = {row.reference.key: row for row in ours if row.reference is not None}
    for ref in load_references():
        if family and ref.family != family:
            continue
        watched = bool(watched_test(ref))
        name = "published (watched test)" if watched else "published"
        add([go.Scatter(x=[100 * ref.accuracy], y=[ref.model], mode="markers", name=name,
                        marker={"color": PUBLISHED, "size": 11, "symbol": "diamond-open" if watched else "diamond",
                                "line": {"width": 2, "color": PUBLISHED}},
                        hovertemplate=f"%{{y}}: %{{x:.2f}}% published<extra>{name}</extra>")])
        if ref.key in reproduced:
            add(_ours_points(reproduced[ref.key], "our reproduction, mean ± std", OURS, "circle", True))
    lines = len({y for trace in fig.data for y in trace.y})
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="single seeds",
                             marker={"color": "#444", "symbol": "line-ns-open", "line": {"width": 2}}))
    fig.update_layout(title="Test accuracy per model: ours (mean ± std over seeds, each seed a tick) beside "
                            "the published figures",
                      xaxis_title="test accuracy (%)", yaxis={"autorange": "reversed", "automargin": True},
                      template="plotly_white", height=160 + 30 * lines, legend={"orientation": "h", "y": -0.12},
                      margin={"t": 60})
    return fig


def params_chart(ours: list[Row], family: str | None = None) -> go.Figure:
    """Accuracy against parameter count (log axis), with the Pareto front of our models;
    refits are starred with their std over seeds."""
    fig = go.Figure()
    refs = [r for r in load_references() if r.params and (family is None or r.family == family)]
    groups: list[tuple[str, list[Row], str, str]] = [
        ("published", [Row(r.model, r.family, "published", reference=r) for r in refs], PUBLISHED, "diamond"),
        ("our reproductions", [r for r in ours if r.kind == "reference"], OURS, "circle"),
        ("our study trials", [r for r in ours if r.kind == "study"], TRIAL, "square"),
        ("our refits (mean ± std)", [r.refit for r in ours if r.refit and r.refit.runs], REFIT, "star"),
    ]
    front_points = []
    for name, rows, color, symbol in groups:
        pts = [(row.params, _test(row), row.spread("test_accuracy"), row.model) for row in rows
               if row.params and _test(row) is not None]
        if not pts:
            continue
        if name != "published":
            front_points += [(p, a) for p, a, _, _ in pts]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], text=[p[3] for p in pts], mode="markers", name=name,
            marker={"size": 15 if symbol == "star" else 11, "color": color, "symbol": symbol},
            error_y={"type": "data", "array": [100 * (p[2] or 0.0) for p in pts], "visible": symbol == "star"},
            hovertemplate="%{text}: %{y:.2f}% with %{x:,} params<extra></extra>"))
    front, best = [], -1.0
    for params, acc in sorted(front_points):  # fewest params first: keep points that raise the accuracy
        if acc > best:
            front.append((params, acc))
            best = acc
    if front:
        fig.add_trace(go.Scatter(x=[p for p, _ in front], y=[a for _, a in front], mode="lines",
                                 line={"shape": "hv", "dash": "dot", "color": "#24292f"}, name="Pareto front (ours)"))
    fig.update_layout(title="Accuracy against parameters (log axis): our Pareto front, refits starred",
                      xaxis_type="log", xaxis_title="parameters (log)", yaxis_title="test accuracy (%)",
                      template="plotly_white", height=520)
    return fig


def _test(row: Row) -> float | None:
    """Test accuracy in percent: ours (mean over seeds) or published."""
    ours = row.metric("test_accuracy")
    if ours is not None:
        return 100 * ours
    return 100 * row.reference.accuracy if row.reference else None


def class_report(client: MlflowClient, run: Run) -> dict | None:
    try:
        path = client.download_artifacts(run.info.run_id, "classification_report.json")
    except Exception:  # an older run, or artifacts gone
        return None
    return json.loads(Path(path).read_text())


def f1_chart(report: dict, title: str) -> go.Figure:
    f1 = [report["test"][letter]["f1-score"] for letter in LETTERS]
    fig = go.Figure(go.Bar(x=list(LETTERS), y=f1, text=[f"{v:.3f}" for v in f1]))
    fig.update_layout(title=f"Per-letter F1 on the test split: {title}", yaxis_range=[0, 1.02],
                      yaxis_title="F1", template="plotly_white", height=420)
    return fig


# ---- the page ---------------------------------------------------------------------------
def write_report(client: MlflowClient, output: Path, experiments: list[str] | None = None,
                 study: str | None = None, family: str | None = None, top: int = 1) -> list[Path]:
    """Write report.md and report.html into `output`; the paths written."""
    ours = collect(client, experiments, study, family, top)
    tables = [ours_table(ours), references_table(ours, family)]
    best = best_row(ours)
    figures = [accuracy_chart(ours, family), params_chart(ours, family)]
    notes = _notes(family)
    if best:
        model = best.delivered  # the primary refit where there is one: the model users get
        report = class_report(client, model.runs[0])
        title = f"{model.model} (seed {model.runs[0].data.params.get('refit_seed')})" if model.kind == "refit" \
            else best.model
        if report:
            figures.append(f1_chart(report, title))
            if "confusion" in report:
                confusion = np.asarray(report["confusion"])
                first = model.runs[0].data.metrics
                ev = Evaluation(first.get("test_accuracy", 0.0), first.get("test_f1_macro", 0.0), 0.0, {}, confusion)
                figures.append(confusion_figure(ev, f"{title}, test split"))
            else:
                notes.append("The best run predates confusion matrices in classification_report.json; "
                             "see its confusion_matrix.html artifact.")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lead = headline(best, family)
    intro = _intro(ours, stamp, redact(mlflow.get_tracking_uri()))
    md, page = output / "report.md", output / "report.html"
    _write(md, _markdown_page(lead, intro, tables, notes))
    _write(page, _html_page(lead, intro, tables, notes, figures))
    return [md, page]


def _write(path: Path, text: str) -> None:
    """Write a file for users whole or not at all."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def _intro(ours: list[Row], stamp: str, uri: str) -> str:
    splits = sorted({f"{r.data.params['val_strategy']} {100 * float(r.data.params.get('val_fraction', 0)):.0f}%"
                     for row in ours for r in row.runs if "val_strategy" in r.data.params})
    held = f" ({', '.join(splits)})" if splits else ""
    return (f"Generated {stamp} from `{uri}`. Models are chosen on a validation split held out from the "
            f"training file{held}; test figures are reported, never used to choose. Published figures come "
            "from `studies/references.yaml`. Accuracies are in percent; ± is the standard deviation over seeds.")


def _notes(family: str | None) -> list[str]:
    """The notes on the published rows shown."""
    return [f"{r.model}: {r.note}." for r in load_references() if r.note and (family is None or r.family == family)]


def _markdown_page(lead: str, intro: str, tables: list[Table], notes: list[str]) -> str:
    parts = ["# signlab report", f"**Headline.** {lead}", intro]
    for table in tables:
        parts += [f"## {table.title}", markdown(table).rstrip("\n"), f"_{table.caption}_"]
    if notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in notes)]
    parts.append("Charts (accuracy per model with the spread over seeds, accuracy against parameters, per-letter "
                 "F1 and the confusion matrix of our best model) are in report.html.")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` as HTML, the rest escaped."""
    out = h.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _html_table(table: Table) -> str:
    """A table whose numeric columns align on the decimal point, std set apart."""
    split = {head for head in table.right if any(" ± " in cell for cell in table.column(head))}

    def cell(head: str, value: str) -> str:
        if head in table.lists:
            value = ", ".join(f"<span class='item'>{_inline(item)}</span>" for item in value.split(", ") if item)
        else:
            value = _inline(value)
        if head not in table.right:
            return f"<td{' class=muted' if head in table.muted else ''}>{value}</td>"
        if head in split:
            mean, _, sd = value.partition(" ± ")
            return f"<td class='num'>{h.escape(mean)} <span class='sd'>{'± ' + sd if sd else ''}</span></td>"
        return f"<td class='num'>{value}</td>"

    if not table.rows:
        return f"<h2>{h.escape(table.title)}</h2><p class='caption'>(no rows)</p>"
    heads = "".join(f"<th{' class=num' if head in table.right else ''}>{h.escape(head)}</th>" for head in table.heads)
    body = "".join("<tr>" + "".join(cell(head, value) for head, value in zip(table.heads, row, strict=True))
                   + "</tr>" for row in table.rows)
    return (f"<h2>{h.escape(table.title)}</h2><div class='scroll'><table><thead><tr>{heads}</tr></thead>"
            f"<tbody>{body}</tbody></table></div><p class='caption'>{_inline(table.caption)}</p>")


CSS = """
body{margin:0;background:#fff;color:#1f2328;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:28px 32px 56px}
h1{font-size:28px;margin:0 0 14px}
h2{font-size:20px;margin:36px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
.headline{font-size:18px;line-height:1.45;margin:0 0 12px;padding:14px 18px;background:#eef5ff;
border-left:5px solid #1f6feb;border-radius:4px}
.intro,.caption,.notes{color:#59636e;font-size:13px}
.caption{margin:6px 0 0;max-width:110ch}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f3f4f6;padding:1px 4px;
border-radius:3px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #d8dee4;padding:5px 8px;vertical-align:top}
th{background:#f3f5f7;text-align:left;font-weight:600;vertical-align:bottom;line-height:1.25}
td:first-child{min-width:15em}
td.muted{color:#59636e;font-size:12px}
.item{white-space:nowrap}
tbody tr:nth-child(even){background:#f8f9fb}
tbody tr:hover{background:#eef5ff}
.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
th.num{min-width:4.5em}
.sd{display:inline-block;min-width:3.3em;text-align:left;color:#59636e}
.chart{margin:18px 0}
"""


def _html_page(lead: str, intro: str, tables: list[Table], notes: list[str], figures: list[go.Figure]) -> str:
    """One self-contained page: plotly.js inlined once, before the first chart."""
    charts = "".join(f"<div class='chart'>{fig.to_html(full_html=False, include_plotlyjs=(i == 0))}</div>"
                     for i, fig in enumerate(figures))
    notes_html = ("<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{_inline(n)}</li>" for n in notes) + "</ul>"
                  if notes else "")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>signlab report</title>"
            f"<style>{CSS}</style></head><body><main><h1>signlab report</h1>"
            f"<p class='headline'>{_inline(lead)}</p><p class='intro'>{_inline(intro)}</p>"
            + "".join(_html_table(t) for t in tables) + notes_html
            + f"<h2>Charts</h2>{charts}</main></body></html>")


def run_report(output: Path, experiments: list[str] | None = None, study: str | None = None,
               family: str | None = None, top: int = 1, log_experiment: str = "reports") -> list[Path]:
    """Write the report and log both files as artifacts of a `report` run."""
    client = MlflowClient()
    paths = write_report(client, output, experiments, study, family, top)
    import os

    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run . -e report`: log to its run
        start = {"tags": {"signlab.role": "report"}}
    else:
        experiment = mlflow.set_experiment(log_experiment)
        start = {"experiment_id": experiment.experiment_id, "run_name": "report",
                 "tags": {"signlab.role": "report"}}
    with mlflow.start_run(**start):
        mlflow.log_params({"experiments": ",".join(experiments or []) or "all", "study": study or "all",
                           "family": family or "all", "top": top})
        for path in paths:
            mlflow.log_artifact(str(path))
    return paths
