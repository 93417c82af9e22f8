"""The `signlab` CLI, `data profile` and the MLproject entry point on the real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from helpers import subprocess_env
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _commands(group, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _commands(command, prefix + [name])
        else:
            found.append(prefix + [name])
    return found


def test_every_command_has_help():
    runner = CliRunner()
    commands = _commands(typer.main.get_command(app), [])
    assert ["data", "fetch"] in commands and ["data", "profile"] in commands
    for path in commands:
        result = runner.invoke(app, path + ["--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


@pytest.mark.slow
def test_profile_writes_histograms_and_samples(tmp_path, data_dir):
    result = CliRunner().invoke(app, ["data", "profile", "--data-dir", str(data_dir), "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "train: 27455 images" in result.output and "957-1294 per class" in result.output
    assert "test: 7172 images" in result.output and "144-498 per class" in result.output
    for stem in ("class_histogram_train", "class_histogram_test", "samples_train", "samples_test"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.html"))
    counts = (tmp_path / "class_counts.csv").read_text().splitlines()
    assert counts[0] == "letter,train,test" and counts[1] == "A,1126,331" and len(counts) == 25


@pytest.mark.slow
def test_profile_fails_clearly_on_a_bad_file(tmp_path, data_dir):
    (tmp_path / "sign_mnist_train.csv").write_text("label,pixel1\r\n3,4\r\n")
    (tmp_path / "sign_mnist_test.csv.gz").symlink_to(data_dir / "sign_mnist_test.csv.gz")
    result = CliRunner().invoke(app, ["data", "profile", "--data-dir", str(tmp_path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "sign_mnist_train.csv, row 1: header has 2 columns, expected 785" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_mlflow_run_data_profile_logs_artifacts(tmp_path, data_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, SIGNLAB_DATA_DIR=str(data_dir))
    out = tmp_path / "profile"
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "data_profile", "--env-manager", "local",
         "--experiment-name", "profile-test", "-P", f"output={out}"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("profile-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id, "profile")}
    assert {"profile/class_histogram_train.png", "profile/class_histogram_test.png", "profile/samples_train.png",
            "profile/class_counts.csv"} <= names
