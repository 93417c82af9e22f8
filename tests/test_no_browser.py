"""A machine without Chrome/Chromium (or without network) is a normal case: every chart is
drawn by matplotlib as PNG, and every HTML artifact opens offline (plotly.js inlined, no
<script src=...> from the network). Run under `../shared/tools/without-browser.sh`, which
hides the browser from one command (PATH and the fixed paths where browsers are installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_BROWSER = ROOT.parent / "shared" / "tools" / "without-browser.sh"
BIN = Path(sys.executable).parent
PNG = b"\x89PNG\r\n\x1a\n"
NETWORK_SCRIPT = '<script src="http'

hides_browser = pytest.mark.skipif(not WITHOUT_BROWSER.is_file(), reason=f"needs {WITHOUT_BROWSER}")


def run_without_browser(args: list[str], cwd: Path, data_dir: Path, timeout: int = 300, hide: bool = True,
                        **env: str) -> subprocess.CompletedProcess:
    """`args` as on a machine with no browser (`hide`; else as is, for a BROWSER_PATH of
    our own); asserts exit 0 and no traceback."""
    environment = subprocess_env(MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}",
                                 SIGNLAB_DATA_DIR=str(data_dir), **env)
    command = ["bash", str(WITHOUT_BROWSER), *args] if hide else args
    proc = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    return proc


def test_no_browser_driver_is_imported():
    """PNG needs no headless browser: kaleido and choreographer are not dependencies any more."""
    code = ("import sys, signlab.cli, signlab.data.profile, signlab.runs.job, signlab.search.outputs, "
            "signlab.serving.report; print(sorted({m.split('.')[0] for m in sys.modules} & {'kaleido', 'choreographer'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
@hides_browser
def test_profile_without_a_browser_writes_pngs(tmp_path, data_dir):
    proc = run_without_browser([str(BIN / "signlab"), "data", "profile", "--output", "profile"], tmp_path, data_dir)
    assert "PNG" not in proc.stdout + proc.stderr, "no warning: nothing is missing"
    out = tmp_path / "profile"
    for stem in ("class_histogram_train", "class_histogram_test", "samples_train", "samples_test"):
        assert (out / f"{stem}.png").read_bytes()[:8] == PNG, stem


def _artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    found = []
    for entry in client.list_artifacts(run_id, folder):
        found += _artifacts(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


@pytest.mark.slow
@hides_browser
def test_train_study_and_report_without_a_browser(tmp_path, data_dir):
    """Every chart a training, a study (its trials, refit and parent) and the report log is a
    PNG, and no HTML they log loads a script from the network."""
    run_without_browser([str(BIN / "signlab"), "train", "--preset", "cnn3", "--epochs", "1", "--subset", "20"],
                        tmp_path, data_dir)
    run_without_browser([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "cnn_study", "--env-manager", "local",
                         "--experiment-name", "no-browser", "-P", "study_name=no_browser", "-P", "n_trials=2",
                         "-P", "max_epochs=1", "-P", "subset=20", "-P", "refit_seeds=1",
                         "-P", f"storage=sqlite:///{tmp_path / 'optuna.db'}"],
                        tmp_path, data_dir, timeout=600)  # `mlflow run` runs in ROOT: a relative optuna.db would land there
    run_without_browser([str(BIN / "signlab"), "report", "--output", "reports"], tmp_path, data_dir)
    report = (tmp_path / "reports" / "report.html").read_text()
    assert len(report) > 10_000 and NETWORK_SCRIPT not in report
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if r.data.tags.get("signlab.role") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    parent = next(r for r in runs if r.data.tags.get("signlab.role") == "study")
    assert {"plots/optimization_history.png", "plots/study_plots.html"} <= set(_artifacts(client, parent.info.run_id))
    html_seen = 0
    for run in runs:
        names = _artifacts(client, run.info.run_id)
        if run.data.tags.get("signlab.role") != "study" and "model_summary.txt" in names:  # a trained model
            assert {"confusion_matrix.png", "learning_curves.png"} <= set(names), run.data.tags
        for name in names:
            path = Path(client.download_artifacts(run.info.run_id, name))
            if name.endswith(".png"):
                assert path.read_bytes()[:8] == PNG, name
            elif name.endswith(".html"):
                html_seen += 1
                assert NETWORK_SCRIPT not in path.read_text(), f"{name} of {run.info.run_id} needs the network"
    assert html_seen, "the parent's study_plots.html at least"
