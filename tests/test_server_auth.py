"""`signlab server --auth`: a real server on 127.0.0.1 refuses what an outsider would try
(deleting runs and experiments, creating and deleting models, uploading artifacts) and lets
its users log runs; it will not start without an admin password or open to the network
without authentication."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from helpers import assert_one_line_error, free_port, run_cli, subprocess_env, wait_for_http
from typer.testing import CliRunner

from signlab.cli import app

pytestmark = pytest.mark.slow  # a real server in a child process

PASSWORD = "correct-horse-battery-staple"
API = "/api/2.0/mlflow"


@contextmanager
def auth_server(folder: Path, seconds: float = 180) -> Iterator[str]:
    """`signlab server --auth` on 127.0.0.1 with its stores in `folder`; yields its URL."""
    port = free_port()
    log = folder / "server.log"
    env = subprocess_env(SIGNLAB_ADMIN_PASSWORD=PASSWORD)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signlab", "server", "--auth", "--port", str(port), "--backend-store-uri",
             f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts")],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health", proc, seconds, log)  # /health answers without credentials
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("auth-server")
    with auth_server(folder) as url:
        yield url, folder


def _call(url: str, method: str, path: str, auth: tuple[str, str] | None = None, **kwargs) -> requests.Response:  # noqa: ANN003
    return requests.request(method, url + path, auth=auth, timeout=60, **kwargs)


def test_without_credentials_nothing_can_be_changed(server):
    url, _ = server
    admin = ("admin", PASSWORD)
    experiment = _call(url, "POST", f"{API}/experiments/create", admin, json={"name": "kept"}).json()["experiment_id"]
    run = _call(url, "POST", f"{API}/runs/create", admin, json={"experiment_id": experiment}).json()["run"]["info"]
    assert _call(url, "POST", f"{API}/registered-models/create", admin, json={"name": "kept-model"}).ok
    refused = {
        "runs/delete": _call(url, "POST", f"{API}/runs/delete", json={"run_id": run["run_id"]}),
        "experiments/delete": _call(url, "POST", f"{API}/experiments/delete", json={"experiment_id": experiment}),
        "registered-models/create": _call(url, "POST", f"{API}/registered-models/create", json={"name": "evil"}),
        "registered-models/delete": _call(url, "DELETE", f"{API}/registered-models/delete", json={"name": "kept-model"}),
        "artifact upload": _call(url, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run['run_id']}"
                                 "/artifacts/evil.txt", data=b"evil"),
        "runs/search": _call(url, "POST", f"{API}/runs/search", json={"experiment_ids": [experiment]}),
        "wrong password": _call(url, "POST", f"{API}/runs/delete", ("admin", "not-the-password"),
                                json={"run_id": run["run_id"]}),
    }
    assert {name: answer.status_code for name, answer in refused.items()} == dict.fromkeys(refused, 401)
    # and nothing changed
    got = _call(url, "GET", f"{API}/runs/get", admin, params={"run_id": run["run_id"]}).json()["run"]["info"]
    assert got["lifecycle_stage"] == "active"
    assert _call(url, "GET", f"{API}/registered-models/get", admin, params={"name": "kept-model"}).ok
    assert _call(url, "GET", f"{API}/registered-models/get", admin, params={"name": "evil"}).status_code == 404
    listed = _call(url, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run['run_id']}/artifacts", admin)
    assert "evil.txt" not in listed.text


def test_with_credentials_a_run_is_logged(server, monkeypatch, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    url, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(url)
    experiment = client.create_experiment("logged")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "lr", "0.001")
    client.log_metric(run.info.run_id, "val_accuracy", 0.9)
    (tmp_path / "note.txt").write_text("hello")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    client.set_terminated(run.info.run_id)
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.001"} and got.data.metrics == {"val_accuracy": 0.9}
    assert got.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    assert mlflow.get_tracking_uri() != url  # the client above, not a global, was pointed at the server


def _users(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`signlab server users ARGS` run here (CliRunner, `env` set meanwhile), as a finished
    process: stdout and stderr together, as `assert_one_line_error` reads them."""
    result = CliRunner().invoke(app, ["server", "users", *args], env=env)
    return subprocess.CompletedProcess(args, result.exit_code, result.output)


def test_team_users_are_added_and_can_log_but_not_delete(server):
    url, _ = server
    as_admin = {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD,
                "SIGNLAB_USER_PASSWORD": "alice-long-password"}
    added = _users("add", "alice", env=as_admin)
    assert added.returncode == 0 and f"user alice created on {url}" in added.stdout, added.stdout
    listed = _users("list", env=as_admin)
    assert listed.returncode == 0 and listed.stdout.split("\n")[:2] == ["admin (admin)", "alice"], listed.stdout
    again = _users("add", "alice", env=as_admin)
    assert_one_line_error(again, "400", "alice", "already exists")
    no_admin = _users("list", env={**as_admin, "MLFLOW_TRACKING_PASSWORD": "wrong-password"})
    assert_one_line_error(no_admin, "refused admin's credentials (401)")

    alice = ("alice", "alice-long-password")
    admin = ("admin", PASSWORD)
    experiment = _call(url, "POST", f"{API}/experiments/create", admin, json={"name": "shared"}).json()["experiment_id"]
    run = _call(url, "POST", f"{API}/runs/create", alice, json={"experiment_id": experiment})
    assert run.ok, run.text  # the default permission, EDIT, lets the team log to each other's studies
    deleted = _call(url, "POST", f"{API}/experiments/delete", alice, json={"experiment_id": experiment})
    assert deleted.status_code == 403  # but not delete them


def test_the_server_keeps_its_secrets_to_its_owner(server):
    _, folder = server
    for name in ("mlflow-auth.db", "mlflow-auth.ini", "mlflow-auth.secret-key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert len((folder / "mlflow-auth.secret-key").read_text().strip()) == 64
    ini = (folder / "mlflow-auth.ini").read_text()
    assert f"database_uri = sqlite:///{folder / 'mlflow-auth.db'}" in ini and PASSWORD not in ini


def test_a_different_admin_password_later_is_refused(server):
    _, folder = server
    proc = run_cli("server", "--auth", "--port", str(free_port()), "--backend-store-uri",
                   f"sqlite:///{folder / 'mlflow.db'}", env=subprocess_env(SIGNLAB_ADMIN_PASSWORD="another-long-password"),
                   cwd=folder, timeout=120)
    assert_one_line_error(proc, "$SIGNLAB_ADMIN_PASSWORD is not the password of 'admin'", "nothing was started")


@pytest.mark.parametrize("password", [None, "", "short"])
def test_auth_refuses_to_start_without_an_admin_password(tmp_path, password):
    env = {k: v for k, v in subprocess_env().items() if k != "SIGNLAB_ADMIN_PASSWORD"}
    if password is not None:
        env["SIGNLAB_ADMIN_PASSWORD"] = password
    proc = run_cli("server", "--auth", "--port", str(free_port()), env=env, cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "SIGNLAB_ADMIN_PASSWORD", "12", "nothing was started")
    assert os.listdir(tmp_path) == []  # no database, key or config was made


def test_the_network_needs_auth_or_insecure(tmp_path):
    proc = run_cli("server", "--host", "0.0.0.0", "--port", str(free_port()), cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "--host 0.0.0.0 without --auth", "--insecure")
    assert os.listdir(tmp_path) == []
