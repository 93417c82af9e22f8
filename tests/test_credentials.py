"""A password in the tracking URI never reaches the screen, whoever prints: signlab's own
messages, or MLflow's "View run ... at: URL" lines. Against a live `mlflow server` on
127.0.0.1 (it has no authentication: MLflow ignores the URL's credentials, so a leak would
show all the same)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import mlflow_server, run_cli, subprocess_env, tiny_study
from mlflow.tracking import MlflowClient

SECRET = "Sup3r-s3cret"  # noqa: S105 (a test value)
pytestmark = pytest.mark.slow  # a live `mlflow server`


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """`mlflow server` on 127.0.0.1 with a SQLite store; its URL, without credentials."""
    with mlflow_server(tmp_path_factory.mktemp("server")) as url:
        yield url


def _with_credentials(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@")


@pytest.mark.usefixtures("data_dir")
def test_no_command_prints_the_tracking_password(server, tmp_path):
    uri = _with_credentials(server, f"bob:{SECRET}")
    env = subprocess_env(MLFLOW_TRACKING_URI=uri)
    tiny_study(tmp_path, "creds")
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


def test_a_token_in_the_tracking_uri_stops_mlflow_printing_run_links(server, tmp_path):
    proc = run_cli("report", "--tracking-uri", _with_credentials(server, SECRET), "--output", "reports", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert SECRET not in proc.stdout and "View run" not in proc.stdout, proc.stdout
    assert "http://***@127.0.0.1" in proc.stdout and (Path(tmp_path) / "reports" / "report.html").exists()
