"""Progress inside a trial: on a terminal the study's bar follows the running trial's epochs
(piped output, CI logs, has no bar: tests/test_sessions.py); `signlab train` prints the time left."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from helpers import mlflow_store, subprocess_env, tiny_study

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow  # signlab in child processes, training on the real data


def _on_terminal(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run `args` with a 120-column pseudo-terminal as stdin/stdout/stderr; (exit code, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_study_bar_follows_epochs_on_a_terminal_only(tmp_path, data_dir):
    tiny_study(tmp_path, "bar", max_epochs=3, subset=8, high=32)
    env = subprocess_env(SIGNLAB_DATA_DIR=str(data_dir), MLFLOW_TRACKING_URI=mlflow_store(tmp_path))
    command = [str(BIN / "signlab"), "study", "run", "bar.yaml", "--n-trials", "1", "--storage",
               f"sqlite:///{tmp_path / 'optuna.db'}"]
    code, output = _on_terminal(command, tmp_path, env)
    assert code == 0, output[-3000:]
    assert "trial 0: epoch 1/3, val_acc" in output and "trial 0: epoch 3/3, val_acc" in output
    # piped, the same command prints no bar: tests/test_sessions.py's study processes check it


def test_train_prints_time_left_and_records_system_metrics(tmp_path, data_dir, monkeypatch):
    """Per-epoch lines with the time left; system metrics on the run (sampled every 0.1 s
    here, MLflow's default is 10 s: MLflow logs its first sample one interval after the run
    starts, and this run lasts a few seconds), none with --no-system-metrics. In this process:
    the lines do not depend on a terminal."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from signlab.cli import app

    uri = mlflow_store(tmp_path)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    runs = {}
    for name, extra in (("with", []), ("without", ["--no-system-metrics"])):
        result = CliRunner().invoke(app, ["train", "--family", "mlp", "--preset", "nn2", "--epochs", "2",
                                          "--subset", "8", "--run-name", name, "--tracking-uri", uri,
                                          "--data-dir", str(data_dir), *extra])
        assert result.exit_code == 0, result.output[-3000:]
        runs[name] = result.stderr
    lines = [line for line in runs["with"].splitlines() if line.startswith("epoch ")]
    assert lines[0].startswith("epoch 1/2:") and " s/epoch, " in lines[0] and lines[0].endswith(" left)")
    assert lines[1].startswith("epoch 2/2:") and lines[1].endswith(" s/epoch)")
    client = MlflowClient(uri)
    by_name = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("signlab").experiment_id])}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(by_name["with"].data.metrics)
    assert not [k for k in by_name["without"].data.metrics if k.startswith("system/")]
