"""A password in the tracking URI never reaches the screen, whoever prints: signlab's own
messages, or MLflow's "View run ... at: URL" lines. Against a live `mlflow server` on
127.0.0.1 (it has no authentication: MLflow ignores the URL's credentials, so a leak would
show all the same)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import run_cli, subprocess_env
from mlflow.tracking import MlflowClient

SECRET = "Sup3r-s3cret"  # noqa: S105 (a test value)
STUDY = """\
study_name: creds
family: mlp
max_epochs: 1
subset: 6
sampler: {type: tpe, seed: 1}
pruner: {type: none}
space:
  units: {type: int, low: 16, high: 64}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """`mlflow server` on 127.0.0.1 with a SQLite store; its URL, without credentials."""
    folder = tmp_path_factory.mktemp("server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "art")],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _with_credentials(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@")


@pytest.mark.slow
def test_no_command_prints_the_tracking_password(server, tmp_path):
    uri = _with_credentials(server, f"bob:{SECRET}")
    env = subprocess_env(MLFLOW_TRACKING_URI=uri)
    (tmp_path / "creds.yaml").write_text(STUDY)
    outputs = {
        "train": run_cli("train", "--family", "mlp", "--preset", "nn2", "--subset", "10", "--epochs", "1",
                         env=env, cwd=tmp_path),
        "study": run_cli("study", "run", "creds.yaml", "--n-trials", "1", "--no-progress",
                         "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", env=env, cwd=tmp_path),
        "report": run_cli("report", "--tracking-uri", uri, "--output", "reports", cwd=tmp_path),
    }
    for name, proc in outputs.items():
        assert proc.returncode == 0, proc.stdout
        assert SECRET not in proc.stdout, f"{name} printed the password:\n{proc.stdout}"
        warnings = [line for line in proc.stdout.splitlines() if "carries a password" in line]
        assert len(warnings) == 1 and "bob:***@" in warnings[0], proc.stdout
        # MLflow still prints its run links, without the credentials
        assert f"View run {'report' if name == 'report' else ''}" in proc.stdout, proc.stdout
        assert f"at: {server}/#/experiments/" in proc.stdout, proc.stdout
    client = MlflowClient(server)
    assert {e.name for e in client.search_experiments()} >= {"signlab", "creds", "reports"}, "all logged to the server"


@pytest.mark.slow
def test_a_token_in_the_tracking_uri_stops_mlflow_printing_run_links(server, tmp_path):
    proc = run_cli("report", "--tracking-uri", _with_credentials(server, SECRET), "--output", "reports", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert SECRET not in proc.stdout and "View run" not in proc.stdout, proc.stdout
    assert "http://***@127.0.0.1" in proc.stdout and (Path(tmp_path) / "reports" / "report.html").exists()
