"""The report: headline, each study's chosen trial with its refit and importances, and the
references, in Markdown and HTML, logged to MLflow; the HTML rendered in headless Chromium
(screenshot kept under test-output/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from helpers import (
    assert_one_line_error,
    mlflow_server,
    mlflow_store,
    run_cli,
    runs_by_role,
    subprocess_env,
    tiny_study,
)
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.runs.references import load_references
from signlab.search.outputs import ranked_trials
from signlab.search.setup import Overrides
from signlab.search.study import run_study

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # studies and references trained on the real data; tables alone: test_report_tables.py


def chosen(study):
    """The trial the study chose (no `confirm:` here): the first by the tie rules."""
    return ranked_trials(study)[0]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, data_files) -> tuple[str, Path, object]:
    """A 3-trial study refitted with two seeds, and the nn1 reference run with two seeds, in one store."""
    tmp = tmp_path_factory.mktemp("report")
    uri = mlflow_store(tmp)
    path = tiny_study(tmp, refit={"seeds": 2})
    study = run_study(path, Overrides(n_trials=3), storage=f"sqlite:///{tmp / 'optuna.db'}",
                      tracking_uri=uri, files=data_files, progress=False)
    result = CliRunner().invoke(app, ["reference", "nn1", "--epochs", "1", "--subset", "6", "--seeds", "0,1",
                                      "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    return uri, tmp, study


@pytest.fixture(scope="module")
def report(tracked) -> tuple[Path, Path]:
    uri, tmp, _ = tracked
    out = tmp / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), "--tracking-uri", uri,
                           "--output", str(out)], capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "report.md", out / "report.html"


def test_report_holds_best_trial_references_and_params(tracked, report):
    uri, _, study = tracked
    md, html = (p.read_text() for p in report)
    best = chosen(study)
    assert f"tiny trial {best.number} (best)" in md and f"tiny trial {best.number} (best)" in html
    params = int(MlflowClient(uri).get_run(best.user_attrs["mlflow_run_id"]).data.metrics["n_params"])
    assert f"{params:,}" in md
    for ref in load_references():
        assert ref.model in md, ref.model
        assert ref.model.replace("&", "&amp;") in html, ref.model
        if ref.params:
            assert f"{ref.params:,}" in md
    nn1 = next(line for line in md.splitlines() if line.startswith("| NN 1 "))
    assert "| 2 |" in nn1 and " ± " in nn1 and "| 18.61 |" in nn1  # 2 seeds, mean ± std, published figure
    dasgupta = next(line for line in md.splitlines() if "Dasgupta" in line)
    assert "| yes |" in dasgupta  # flagged: tuned on the test split
    cnn3_aug = next(line for line in md.splitlines() if line.startswith("| CNN 3 + augmentation"))
    assert "| maybe |" in cnn3_aug  # its note says the test split may have been watched
    assert "never used to choose" in md
    assert md.index("## Our models") < md.index("## Published references") < md.index("| NN 1 ")


def _text(html: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities kept)."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", html)))


def test_report_puts_refit_and_importances_beside_the_best_trial(tracked, report):
    uri, _, study = tracked
    md, html = (p.read_text() for p in report)
    parent = runs_by_role(MlflowClient(uri), "tiny")["study"][0].data
    best = chosen(study)
    assert parent.tags["refit.trial_number"] == str(best.number) and parent.metrics["refit_n"] == 2
    refit = (f"{100 * parent.metrics['refit_test_accuracy_mean']:.2f} ± "
             f"{100 * parent.metrics['refit_test_accuracy_std']:.2f}")
    span = (f"{100 * parent.metrics['refit_test_accuracy_min']:.2f}–"
            f"{100 * parent.metrics['refit_test_accuracy_max']:.2f}")
    line = next(line for line in md.splitlines() if line.startswith(f"| tiny trial {best.number} (best) "))
    cells = [cell.strip() for cell in line.split("|")[1:-1]]
    assert cells[3] == f"{100 * best.user_attrs['final_val_accuracy']:.2f}"  # chose it
    assert cells[4].startswith(f"{100 * best.user_attrs['test_accuracy']:.2f} (")  # reported, not used to choose
    low, high = re.fullmatch(r"[\d.]+ \(([\d.]+)–([\d.]+)\)", cells[4]).groups()  # its interval over photos
    assert float(low) <= 100 * best.user_attrs["test_accuracy"] <= float(high)
    assert cells[5].startswith(refit + " (") and cells[6:8] == [span, "2"]  # refit: mean ± std (interval of the mean)
    assert refit in _text(html) and span in _text(html)
    mattered = sorted(((k.removeprefix("importance."), v) for k, v in parent.metrics.items()
                       if k.startswith("importance.")), key=lambda kv: -kv[1])
    assert mattered, "the study logged its fANOVA importances"
    shown = ", ".join(f"{name} {value:.2f}" for name, value in mattered[:5])
    assert f"| {shown} |" in line and shown in _text(html)


def test_report_headline_of_a_quick_run_says_so(tracked, report):
    """The study trained on 6 images per letter and tested on a capped test split: its headline
    says it is a quick run and sets it against no published figure; its rows are marked."""
    uri, _, study = tracked
    md, html = (p.read_text() for p in report)
    parent = runs_by_role(MlflowClient(uri), "tiny")["study"][0].data
    mean = parent.metrics["refit_test_accuracy_mean"]
    head = next(line for line in md.splitlines() if line.startswith("**Headline.**"))
    assert head.startswith("**Headline.** Quick run: ")
    assert f"**tiny**, the refit of its trial {chosen(study).number} (2 seeds)" in head
    assert f"**{100 * mean:.2f}% ± {100 * parent.metrics['refit_test_accuracy_std']:.2f} (" in head
    assert "6 images per letter" in head and "not comparable with published figures" in head and "points" not in head
    assert head.removeprefix("**Headline.** ").replace("**", "") in _text(html)
    assert f"| tiny trial {chosen(study).number} (best) (quick) |" in md
    assert "| NN 1 (MLP 100, raw pixels) (quick) |" in md


def test_the_study_and_the_report_name_the_trials_validation_does_not_tell_from_the_pick(tracked, report):
    """The parent run's `signlab.near_ties`, report.json's `near_ties` and the report's note
    name the complete trials inside the pick's 95% interval over validation photos."""
    import json

    uri, _, study = tracked
    client = MlflowClient(uri)
    pick = chosen(study)
    low = client.get_run(pick.user_attrs["mlflow_run_id"]).data.metrics["final_val_accuracy_ci_low"]
    expected = [t.number for t in ranked_trials(study) if t.number != pick.number
                and "same_params_as" not in t.user_attrs and t.value >= low]
    parent = runs_by_role(client, "tiny")["study"][0].data
    assert parent.tags["signlab.near_ties"] == (",".join(map(str, expected)) or "none")
    assert json.loads((report[0].parent / "report.json").read_text())["ours"][0]["near_ties"] == expected
    note = f"tiny: validation does not tell its pick, trial {pick.number}, from trial"
    assert (note in report[0].read_text()) == bool(expected)
    assert ("validation does not tell it from" in parent.tags["mlflow.note.content"]) == bool(expected)


def test_report_json_and_paired_comparisons(tracked, report):
    """report.json holds what the page shows, for machines; our best is paired with the nn1
    reproduction on the test images both scored (6 per letter)."""
    import json

    uri, _, study = tracked
    data = json.loads((report[0].parent / "report.json").read_text())
    assert data["headline"]["quick"] is True and data["headline"]["text"].startswith("Quick run: ")
    ours = data["ours"][0]
    assert ours["trial"] == chosen(study).number and ours["quick"] is True and ours["n_test"] == 24 * 6
    assert ours["test_ci_low"] <= ours["test_accuracy"] <= ours["test_ci_high"]
    assert ours["run_id"] == chosen(study).user_attrs["mlflow_run_id"]
    refit = ours["refit"]
    assert refit["seeds"] == 2 and len(refit["run_ids"]) == 2
    assert refit["test_ci_low"] <= refit["test_accuracy"] <= refit["test_ci_high"]
    nn1 = next(r for r in data["references"] if r["key"] == "nn1")
    assert nn1["published"] == pytest.approx(0.1861) and nn1["reproduction"]["seeds"] == 2
    paired = nn1["paired_with_our_best"]
    assert paired["verdict"] in ("better", "worse", "no measurable difference")
    # quick runs test on a capped split drawn with their seed: nn1's two seeds and our model share some images
    assert 0 < paired["n_images"] <= 24 * 6 and paired["ci_low"] <= paired["difference"] <= paired["ci_high"]
    assert data["references"][1]["reproduction"] is None  # NN 2: not reproduced here
    md = report[0].read_text()
    line = next(line for line in md.splitlines() if line.startswith("| NN 1 "))
    assert line in md and "## Paired comparisons" in md
    row = next(line for line in md.splitlines() if line.startswith("| NN 1") and paired["verdict"] in line)
    assert f"| {paired['n_images']:,} |" in row


def test_report_is_logged_as_a_run(tracked, report):
    client = MlflowClient(tracked[0])
    runs = client.search_runs([client.get_experiment_by_name("reports").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {"report.md", "report.html", "report.json"}


def test_report_filters(tracked, tmp_path):
    uri = tracked[0]
    result = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--family", "cnn", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report.md").read_text()
    assert "tiny trial" not in md, md
    assert "| NN 1 " not in md and "| CNN 3 " in md and "No runs of ours yet." in md
    result = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--study", "tiny", "--top", "2",
                                      "--output", str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    assert "(best)" in md and "(#2)" in md
    bad = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--experiment", "nope", "--output", str(tmp_path)])
    assert bad.exit_code == 2 and "no experiment named 'nope'" in bad.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    html = report[1].resolve()
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="main-svg"') >= 4, "plotly drew its charts (SVG) without network"
    assert "Accuracy against parameters" in dom and "Per-letter F1" in dom and "test split: accuracy" in dom
    assert "our refit, mean ± std" in dom and "refits starred" in dom and 'class="xerror"' in dom  # spread drawn
    out = Path(os.environ.get("SIGNLAB_TEST_OUTPUT", ROOT / "test-output"))
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "report.png"
    subprocess.run([*flags, "--window-size=1400,2600", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000


def test_report_from_a_tracking_server(tmp_path, data_dir):
    """The same report through `mlflow server` on 127.0.0.1 (http:// tracking URI)."""
    with mlflow_server(tmp_path) as uri:
        result = CliRunner().invoke(app, ["reference", "nn2", "--epochs", "1", "--subset", "6", "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
        out = tmp_path / "out"
        result = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--output", str(out)])
        assert result.exit_code == 0, result.output
        nn2 = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| NN 2 "))
        assert "| 1 |" in nn2 and "| 77.96 |" in nn2
        client = MlflowClient(uri)
        report_run = client.search_runs([client.get_experiment_by_name("reports").experiment_id])[0]
        assert {a.path for a in client.list_artifacts(report_run.info.run_id)} == {"report.md", "report.html",
                                                                                 "report.json"}


def _report_runs(uri: str) -> int:
    client = MlflowClient(uri)
    return len(client.search_runs([client.get_experiment_by_name("reports").experiment_id]))


def test_a_failed_report_write_keeps_the_previous_report(tracked, report, tmp_path):
    """A write that fails halfway (here: a file size limit below the HTML page's 4.8 MB) leaves
    the previous report byte for byte, no temp file, and no report run."""
    import resource

    uri = tracked[0]
    folder = tmp_path / "reports"
    folder.mkdir()
    for path in report:
        (folder / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    runs = _report_runs(uri)
    limit = 1_000_000
    assert len(before["report.html"]) > limit > len(before["report.md"])
    proc = run_cli("report", "--tracking-uri", uri, "--output", str(folder), cwd=tmp_path,
                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert_one_line_error(proc, f"cannot write {folder / 'report.html'}: File too large",
                          "the previous report.html is unchanged")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "both files as they were, no temp file"
    assert _report_runs(uri) == runs


def _one_line_error(result, *words: str) -> str:
    """`assert_one_line_error` on a command run here (CliRunner: stdout and stderr together)."""
    return assert_one_line_error(subprocess.CompletedProcess([], result.exit_code, result.output), *words)


def test_report_output_that_cannot_be_a_folder(tracked, report, tmp_path):
    """A file, a folder under a file, a folder under /sys: one line each, nothing written, no
    report run. Run here: a real process's one-line error is the failed write's, above."""
    (tmp_path / "notes.txt").write_text("mine")
    cases = {tmp_path / "notes.txt": "is a file; expected a folder",
             tmp_path / "notes.txt" / "reports": "Not a directory; expected a folder that can be written to"}
    if Path("/sys/kernel").is_dir():  # root may not write there either
        cases[Path("/sys/signlab-test-reports")] = "expected a folder that can be written to"
    runs = _report_runs(tracked[0])
    for output, expected in cases.items():
        result = CliRunner().invoke(app, ["report", "--tracking-uri", tracked[0], "--output", str(output)])
        _one_line_error(result, str(output), expected)
        assert (tmp_path / "notes.txt").read_text() == "mine" and (output.name == "notes.txt" or not output.exists())
    assert _report_runs(tracked[0]) == runs
