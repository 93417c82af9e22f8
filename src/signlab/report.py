"""The report: our best runs against the published reference models, as Markdown and one
self-contained HTML page, logged to MLflow. It only reads what tracking wrote.

Ours: the best trial of each study (chosen by validation accuracy, never by test) and the
reference reproductions (`signlab reference`), with mean ± std where a configuration ran
with several seeds. Theirs: studies/references.yaml.
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

from signlab.errors import UserError
from signlab.evaluate import Evaluation, confusion_figure
from signlab.files import atomic_path, output_folder
from signlab.labels import LETTERS
from signlab.references import Reference, load_references
from signlab.storage import redact
from signlab.tracking import mark_classic_ml

METRICS = ("final_val_accuracy", "test_accuracy", "test_f1_macro", "test_aug_accuracy",
           "train_seconds", "latency_ms", "n_params")


@dataclass
class Row:
    """One line of the comparison: ours (one run or several seeds), published, or both."""

    model: str
    family: str
    kind: str  # "study", "reference", "published"
    runs: list[Run] = field(default_factory=list)
    reference: Reference | None = None
    study: str | None = None
    trial: int | None = None

    def metric(self, key: str) -> float | None:
        values = [r.data.metrics[key] for r in self.runs if key in r.data.metrics]
        return statistics.fmean(values) if values else None

    def spread(self, key: str) -> float | None:
        values = [r.data.metrics[key] for r in self.runs if key in r.data.metrics]
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def params(self) -> int | None:
        ours = self.metric("n_params")
        return int(ours) if ours is not None else (self.reference.params if self.reference else None)

    @property
    def run_id(self) -> str:
        return ",".join(r.info.run_id[:8] for r in self.runs)


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
    """Our rows: the `top` trials of each study by validation accuracy, and the reference
    reproductions grouped by row (seeds averaged)."""
    ids = _experiment_ids(client, experiments)
    fam = f" and tags.family = '{family}'" if family else ""
    rows: list[Row] = []
    parents = client.search_runs(ids, f"tags.`signlab.role` = 'study'{fam}", max_results=1000)
    for parent in parents:
        name = parent.data.tags.get("study", parent.info.run_name)
        if study and name != study:
            continue
        for rank, run in enumerate(_ranked_trials(client, parent, top), start=1):
            number = int(run.data.tags.get("trial_number", -1))
            label = f"{name} trial {number}" + (" (best)" if rank == 1 else f" (#{rank})")
            rows.append(Row(label, run.data.tags.get("family", "?"), "study", [run], study=name, trial=number))
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


def table(ours: list[Row], family: str | None = None) -> list[dict[str, str]]:
    """The comparison table: every published reference (with our reproduction beside it
    where we ran one), then our study trials."""
    reproduced = {row.reference.key: row for row in ours if row.reference is not None}
    lines = []
    for ref in load_references():
        if family and ref.family != family:
            continue
        lines.append(_line(reproduced.get(ref.key) or Row(ref.model, ref.family, "published", reference=ref)))
    lines += [_line(row) for row in ours if row.kind == "study"]
    return lines


def _pct(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return ""
    return f"{100 * value:.2f}%" + (f" ± {100 * spread:.2f}" if spread is not None else "")


def _line(row: Row) -> dict[str, str]:
    ref = row.reference
    test = row.metric("test_accuracy")
    diff = "" if test is None or ref is None else f"{100 * (test - ref.accuracy):+.2f}"
    seeds = len({r.data.params.get("seed") for r in row.runs})
    return {
        "model": row.model,
        "family": row.family,
        "ours": "yes" + (f" ({seeds} seeds)" if seeds > 1 else "") if row.runs else "",
        "params": f"{row.params:,}" if row.params else "",
        "val acc": _pct(row.metric("final_val_accuracy"), row.spread("final_val_accuracy")),
        "test acc": _pct(test, row.spread("test_accuracy")),
        "macro F1": f"{row.metric('test_f1_macro'):.4f}" if row.metric("test_f1_macro") is not None else "",
        "aug-test acc": _pct(row.metric("test_aug_accuracy")),
        "train s": f"{row.metric('train_seconds'):.0f}" if row.metric("train_seconds") is not None else "",
        "latency ms": f"{row.metric('latency_ms'):.2f}" if row.metric("latency_ms") is not None else "",
        "published acc": _pct(ref.accuracy) if ref else "",
        "diff (pts)": diff,
        "tuned on test": "yes" if ref and ref.tuned_on_test else "",
        "source": (ref.source if ref else f"study {row.study}") + (f"; run {row.run_id}" if row.runs else ""),
    }


def markdown(lines: list[dict[str, str]]) -> str:
    """A Markdown table."""
    if not lines:
        return "(no rows)\n"
    heads = list(lines[0])
    right = {"params", "val acc", "test acc", "macro F1", "aug-test acc", "train s", "latency ms",
             "published acc", "diff (pts)"}
    out = ["| " + " | ".join(heads) + " |", "|" + "|".join("---:" if h in right else "---" for h in heads) + "|"]
    out += ["| " + " | ".join(line[h].replace("|", "/") for h in heads) + " |" for line in lines]
    return "\n".join(out) + "\n"


def best_row(ours: list[Row]) -> Row | None:
    """Our best model on validation data, never test: validation accuracy, ties broken by
    accuracy on the perturbed validation copy, then by fewer parameters."""
    scored = [r for r in ours if r.metric("final_val_accuracy") is not None]
    return max(scored, key=lambda r: (r.metric("final_val_accuracy"), r.metric("final_val_aug_accuracy") or 0.0,
                                      -(r.params or 0)), default=None)


def accuracy_chart(lines: list[dict[str, str]]) -> go.Figure:
    names = [line["model"] for line in lines]
    ours = [_num(line["test acc"]) for line in lines]
    published = [_num(line["published acc"]) for line in lines]
    fig = go.Figure([go.Bar(name="ours (test)", x=names, y=ours), go.Bar(name="published", x=names, y=published)])
    fig.update_layout(title="Test accuracy per model: ours beside the published figures", barmode="group",
                      yaxis_title="test accuracy (%)", yaxis_range=[0, 100.5], template="plotly_white", height=520)
    return fig


def _num(text: str) -> float | None:
    return float(text.split("%")[0]) if text else None


def params_chart(lines: list[dict[str, str]]) -> go.Figure:
    """Accuracy against parameter count (log axis), with the Pareto front of our models."""
    fig = go.Figure()
    for who, key in (("ours", "test acc"), ("published", "published acc")):
        pts = [(int(line["params"].replace(",", "")), _num(line[key]), line["model"])
               for line in lines if line["params"] and line[key]]
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], text=[p[2] for p in pts],
                                     mode="markers", name=who, marker={"size": 11},
                                     hovertemplate="%{text}: %{y:.2f}% with %{x:,} params<extra></extra>"))
    ours = sorted((int(line["params"].replace(",", "")), _num(line["test acc"]))
                  for line in lines if line["params"] and line["test acc"])
    front, best = [], -1.0
    for params, acc in ours:  # fewest params first: keep points that raise the accuracy
        if acc > best:
            front.append((params, acc))
            best = acc
    if front:
        fig.add_trace(go.Scatter(x=[p for p, _ in front], y=[a for _, a in front], mode="lines",
                                 line={"shape": "hv", "dash": "dot"}, name="Pareto front (ours)"))
    fig.update_layout(title="Accuracy against parameters", xaxis_type="log", xaxis_title="parameters (log)",
                      yaxis_title="test accuracy (%)", template="plotly_white", height=520)
    return fig


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


def write_report(client: MlflowClient, output: Path, experiments: list[str] | None = None,
                 study: str | None = None, family: str | None = None, top: int = 1) -> list[Path]:
    """Write report.md and report.html into `output`; the paths written."""
    ours = collect(client, experiments, study, family, top)
    lines = table(ours, family)
    best = best_row(ours)
    figures = [accuracy_chart(lines), params_chart(lines)]
    notes = []
    report = class_report(client, best.runs[0]) if best else None
    if best and report:
        figures.append(f1_chart(report, best.model))
        if "confusion" in report:
            confusion = np.asarray(report["confusion"])
            ev = Evaluation(best.metric("test_accuracy") or 0.0, best.metric("test_f1_macro") or 0.0, 0.0, {}, confusion)
            figures.append(confusion_figure(ev, f"{best.model}, test split"))
        else:
            notes.append("The best run predates confusion matrices in classification_report.json; "
                         "see its confusion_matrix.html artifact.")
    output_folder(output)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = _preamble(best, stamp, redact(mlflow.get_tracking_uri()))
    md, html = output / "report.md", output / "report.html"
    with atomic_path(md) as md_tmp, atomic_path(html) as html_tmp:  # both replaced, or neither
        md_tmp.write_text(head + "\n" + markdown(lines) + _footnotes(lines, notes))
        html_tmp.write_text(_html(head, lines, figures, _footnotes(lines, notes)))
    return [md, html]


def _preamble(best: Row | None, stamp: str, uri: str) -> str:
    pick = (f"Our best model on validation data (accuracy, ties broken on the perturbed validation copy): **{best.model}** "
            f"(validation {_pct(best.metric('final_val_accuracy'))}, test {_pct(best.metric('test_accuracy'))}, "
            f"{best.params:,} params).") if best else "No runs of ours yet."
    return (f"# signlab report\n\nGenerated {stamp} from `{uri}`. Models are chosen on a validation split "
            "held out from the training file; test figures are reported, never used to choose. "
            "Published figures come from `studies/references.yaml`; \"tuned on test\" flags setups that "
            f"watched the test split during training.\n\n{pick}\n")


def _footnotes(lines: list[dict[str, str]], notes: list[str]) -> str:
    flagged = [line["model"] for line in lines if line["tuned on test"]]
    refs = {r.model: r.note for r in load_references() if r.note}
    out = ["", "Notes:"]
    if flagged:
        out.append(f"- Tuned on the test split (not comparable with ours): {', '.join(flagged)}.")
    out += [f"- {model}: {note}." for model, note in refs.items() if any(line["model"] == model for line in lines)]
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def _html(head: str, lines: list[dict[str, str]], figures: list[go.Figure], foot: str) -> str:
    import html as h

    rows = "".join("<tr>" + "".join(f"<td>{h.escape(v)}</td>" for v in line.values()) + "</tr>" for line in lines)
    heads = "".join(f"<th>{h.escape(k)}</th>" for k in (lines[0] if lines else {}))
    charts = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures))
    paragraphs = "".join(
        f"<p>{h.escape(p.lstrip('# ')).replace('**', '')}</p>".replace("`", "")
        for p in head.split("\n\n") if p.strip())
    notes = "".join(f"<li>{h.escape(n[2:])}</li>" for n in foot.splitlines() if n.startswith("- "))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>signlab report</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}th{background:#eee}</style></head><body>"
            f"{paragraphs}<table><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>"
            f"<ul>{notes}</ul>{charts}</body></html>")


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
    with mlflow.start_run(**start) as run:
        mark_classic_ml(mlflow.get_tracking_uri(), run.info.experiment_id)
        mlflow.log_params({"experiments": ",".join(experiments or []) or "all", "study": study or "all",
                           "family": family or "all", "top": top})
        for path in paths:
            mlflow.log_artifact(str(path))
    return paths
