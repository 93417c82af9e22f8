"""`mlflow run` of the studies as users start them, and what the MLflow UI shows of them: the
quick start's way (no --experiment-name, two trials at once as the default study runs them):
the experiment marked as classic ML, the parent run named after the study, no parameter shown
as ''; the study's runs and Optuna's trials in step; the launcher's refit; the same command
again resuming the study (a session run under the one parent); the report, on a machine
without a browser (every chart a PNG, no HTML that needs the network). And `-e cnn_study` in
the MLproject's own environment (`--env-manager uv`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NETWORK_SCRIPT, check_offline_charts, check_study, runs_by_role, subprocess_env, without_browser
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


def mlflow_run(tmp: Path, data_dir: Path, *params: str) -> subprocess.CompletedProcess:
    """`mlflow run . -e mlp_study` with `params` (key=value), no --experiment-name, as on a
    machine without a browser; asserts exit 0 and no traceback."""
    args = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "mlp_study", "--env-manager", "local",
            "-P", f"storage=sqlite:///{tmp / 'optuna.db'}"]  # `mlflow run` runs in ROOT: not a relative path
    for param in params:
        args += ["-P", param]
    env = subprocess_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", SIGNLAB_DATA_DIR=str(data_dir))
    proc = subprocess.run(without_browser(args), capture_output=True, text=True, env=env, timeout=600, cwd=tmp)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output[-4000:]
    return proc


@pytest.mark.slow
def test_mlflow_run_study_reads_as_a_study_resumes_and_reports_without_a_browser(tmp_path, data_dir):
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    small = ("study_name=ui_study", "max_epochs=1", "subset=6")
    proc = mlflow_run(tmp_path, data_dir, *small, "n_trials=2", "parallel=2", "refit_seeds=2")  # as `cnn_study` runs
    output = proc.stdout + proc.stderr
    assert "2 workers on the study (0 trials so far, stopping at 2 in all)" in output
    assert "worker 1: done: " in output and "worker 2: done: " in output
    assert "study ui_study: 2 new trials, 2 in all" in output and output.count("study ui_study: ") == 1, (
        "the budget held (2 trials, not 2 x 2) and one summary, the launcher's")
    client = MlflowClient(uri)
    default = client.get_experiment("0")  # where `mlflow run` files runs without --experiment-name
    assert default.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs(["0"], max_results=100)
    parents = [r for r in runs if r.data.tags.get("signlab.role") == "study"]
    assert [p.info.run_name for p in parents] == ["ui_study"]
    assert parents[0].data.tags["mlflow.runName"] == "ui_study"
    trials = [r for r in runs if r.data.tags.get("signlab.role") == "trial"]
    assert sorted(r.info.run_name for r in trials) == ["trial 0", "trial 1"]
    workers = {r.data.tags["signlab.worker"] for r in trials}
    assert len(workers) == 2, "two processes ran the trials"
    assert "?workflowType=machine_learning" in output  # the link the summary prints
    # `mlflow run` logs every entry-point parameter as given: the defaults are words, never ''.
    params = parents[0].data.params
    assert params["seed"] == "file" and params["tracking_uri"] == "default"
    assert "" not in params.values()
    # the study as a whole: parent, trials and Optuna agreeing both ways, charts, the choice
    check_study(client, storage, "Default", "ui_study", 2)
    # the refit: once, however close together the workers ended; both seeds at once, each in a
    # process of its own started by the launcher; the summary on the parent over both
    refits = runs_by_role(client, "Default")["refit"]
    assert sorted(r.data.tags["refit_seed"] for r in refits) == ["0", "1"]
    assert {r.data.tags["trial_number"] for r in refits} == {parents[0].data.tags["best.trial_number"]}
    assert {r.data.tags["refit_primary"] for r in refits} == {"true", "false"}
    assert [r.data.tags["refit_primary"] for r in refits if r.data.tags["refit_seed"] == "0"] == ["true"]
    assert len({r.data.tags["signlab.worker"] for r in refits} | workers) == 4, "two refit processes"
    assert f"refit of trial {parents[0].data.tags['best.trial_number']}, seeds 0, 1 at once" in output
    assert "worker 1: refit" not in output and "worker 2: refit" not in output
    parent = client.get_run(parents[0].info.run_id)
    assert parent.data.metrics["refit_n"] == 2
    assert parent.data.tags["refit.run_ids"].split(",") == [
        r.info.run_id for r in sorted(refits, key=lambda r: r.data.tags["refit_seed"])]
    # the command again resumes, in parallel too: numbering goes on, still one parent, its
    # run a session under the parent
    resumed = mlflow_run(tmp_path, data_dir, *small, "n_trials=2", "parallel=2", "refit_seeds=0")
    output = resumed.stdout + resumed.stderr
    assert "2 workers on the study (2 trials so far, stopping at 4 in all)" in output
    check_study(client, storage, "Default", "ui_study", 4)
    roles = runs_by_role(client, "Default")
    (session,) = roles["session"]
    assert session.data.metrics["trials_added"] == 2
    assert session.data.tags["mlflow.parentRunId"] == roles["study"][0].info.run_id
    assert roles["study"][0].data.metrics["n_trials"] == 4
    refit_of = [(r.data.tags["trial_number"], r.data.tags["refit_seed"]) for r in roles["refit"]]
    assert len(refit_of) == len(set(refit_of)), "no trial refit twice with one seed"
    # the report, also without a browser: one HTML page that opens offline
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, SIGNLAB_DATA_DIR=str(data_dir))
    report = subprocess.run(without_browser([str(Path(sys.executable).parent / "signlab"), "report", "--output",
                                             "reports"]), capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert report.returncode == 0 and "Traceback" not in report.stdout + report.stderr, report.stderr[-4000:]
    page = (tmp_path / "reports" / "report.html").read_text()
    assert len(page) > 10_000 and NETWORK_SCRIPT not in page
    check_offline_charts(client)
