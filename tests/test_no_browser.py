"""A machine without Chrome/Chromium is a normal case: every command finishes, writes its
HTML and says once that PNG output is off; a browser that is found but broken, or hangs,
falls back the same way. Run under `../shared/tools/without-browser.sh`, which hides the
browser from one command (PATH and the fixed paths choreographer also tries)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BROWSER, needs_browser, subprocess_env
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_BROWSER = ROOT.parent / "shared" / "tools" / "without-browser.sh"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow  # signlab and `mlflow run` in child processes, on the real data
hides_browser = pytest.mark.skipif(
    not WITHOUT_BROWSER.is_file() or (os.geteuid() != 0 and BROWSER is not None),
    reason=f"needs {WITHOUT_BROWSER}, run as root where a browser is installed (it hides /usr/bin/chromium "
           "in a private mount namespace)")


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


@hides_browser
def test_profile_without_a_browser_writes_html_and_warns_once(tmp_path, data_dir):
    proc = run_without_browser([str(BIN / "signlab"), "data", "profile", "--output", "profile"], tmp_path, data_dir)
    output = proc.stdout + proc.stderr
    assert output.count("PNG output is off: no Chrome/Chromium found") == 1, output
    assert "apt install chromium" in output
    out = tmp_path / "profile"
    assert (out / "class_histogram_train.html").stat().st_size > 1000
    assert not (out / "class_histogram_train.png").exists()


@hides_browser
def test_train_study_and_report_without_a_browser(tmp_path, data_dir):
    run_without_browser([str(BIN / "signlab"), "train", "--preset", "cnn3", "--epochs", "1", "--subset", "20"],
                        tmp_path, data_dir)
    run_without_browser([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "cnn_study", "--env-manager", "local",
                         "--experiment-name", "no-browser", "-P", "study_name=no_browser", "-P", "n_trials=2",
                         "-P", "max_epochs=1", "-P", "subset=20", "-P", "refit_seeds=1",
                         "-P", f"storage=sqlite:///{tmp_path / 'optuna.db'}"],
                        tmp_path, data_dir, timeout=600)  # `mlflow run` runs in ROOT: a relative optuna.db would land there
    run_without_browser([str(BIN / "signlab"), "report", "--output", "reports"], tmp_path, data_dir)
    assert (tmp_path / "reports" / "report.html").stat().st_size > 10_000
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    trials = client.search_runs([client.get_experiment_by_name("no-browser").experiment_id],
                                filter_string="tags.`signlab.role` = 'trial'")
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    names = {a.path for a in client.list_artifacts(trials[0].info.run_id)}
    assert "confusion_matrix.html" in names and "confusion_matrix.png" not in names


@pytest.mark.parametrize("browser", ["exits", "hangs"])
def test_a_broken_browser_falls_back_to_html(tmp_path, data_dir, browser):
    fake = tmp_path / "fake-chrome"
    fake.write_text("#!/bin/sh\n" + ("exit 1\n" if browser == "exits" else "sleep 600\n"))
    fake.chmod(0o755)
    proc = run_without_browser([str(BIN / "signlab"), "data", "profile", "--output", "profile"], tmp_path, data_dir,
                               timeout=120, hide=False, BROWSER_PATH=str(fake), SIGNLAB_PNG_TIMEOUT="5")
    output = proc.stdout + proc.stderr
    assert output.count(f"PNG output is off: {fake} did not start") == 1, output
    assert (tmp_path / "profile" / "class_histogram_test.html").is_file()
    assert not (tmp_path / "profile" / "class_histogram_test.png").exists()
    left = subprocess.run(["pgrep", "-f", str(fake)], capture_output=True, text=True).stdout.split()
    assert not left, f"the fake browser was left running: {left}"


@needs_browser
def test_png_written_with_a_browser(tmp_path):
    import plotly.graph_objects as go

    from signlab.plots import save_figure

    written = save_figure(go.Figure(go.Bar(x=["A", "B"], y=[1, 2])), tmp_path / "chart")
    assert [p.suffix for p in written] == [".html", ".png"]
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
