"""`signlab dashboard`: optuna-dashboard serving a real study, each trial carrying its MLflow run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import (
    assert_one_line_error,
    free_port,
    mlflow_server,
    run_cli,
    subprocess_env,
    synthetic_files,
    tiny_study,
    wait_for_http,
)
from mlflow.tracking import MlflowClient

from signlab.search.setup import Overrides
from signlab.search.study import run_study

pytestmark = pytest.mark.slow  # servers and signlab in child processes


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


@contextmanager
def _dashboard(tmp_path, storage: str, *options: str) -> Iterator[tuple[str, Path]]:
    """`signlab dashboard` on 127.0.0.1 with `options`; yields its URL and its log."""
    port = free_port()
    log = tmp_path / f"dashboard-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "signlab", "dashboard", "--storage", storage, "--port", str(port),
                                 *options], stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/api/studies", proc, 60, log)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browsed(tmp_path_factory) -> Iterator[tuple[Path, str, str, object, str, Path]]:
    """A 2-trial study tracked by `mlflow server` on 127.0.0.1 (run URLs exist only for a
    server), run here on synthetic data, and `signlab dashboard` (its defaults) serving it:
    the folder, the storage, the tracking URL, the study, the dashboard's URL and its log."""
    tmp = tmp_path_factory.mktemp("dashboard")
    storage = f"sqlite:///{tmp / 'optuna.db'}"
    path = tiny_study(tmp, "browse", max_epochs=1, high=32, subset=0, validation={"strategy": "random", "fraction": 0.25})
    with mlflow_server(tmp) as tracking:
        study = run_study(path, Overrides(n_trials=2), storage=storage, tracking_uri=tracking,
                          files=synthetic_files(per_letter=4), progress=False, echo=lambda line: None)
        with _dashboard(tmp, storage) as (base, log):
            yield tmp, storage, tracking, study, base, log


def test_dashboard_shows_the_study_and_each_trials_run(browsed):
    _, storage, tracking_server, study, base, log = browsed
    summaries = _get(base + "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["browse"]  # no parent-lock study left behind
    detail = _get(f"{base}/api/studies/{summaries[0]['study_id']}")
    assert f"optuna-dashboard for {storage} on {base}/" in log.read_text()
    assert detail["objective_names"] == ["val_accuracy"]
    assert len(detail["trials"]) == len(study.trials) == 2
    client = MlflowClient(tracking_server)
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        run = client.get_run(attrs["mlflow_run_id"])
        assert run.data.tags["trial_number"] == str(trial["number"])
        assert attrs["mlflow_run_url"] == (f"{tracking_server}/#/experiments/{run.info.experiment_id}/runs/"
                                           f"{run.info.run_id}?workflowType=machine_learning")


def _ask(url: str, method: str = "GET", host: str | None = None) -> int:
    """The status of one request, with `host` as its Host header."""
    request = urllib.request.Request(url, method=method, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_dashboard_is_read_only_and_answers_only_its_own_host_names(browsed, tmp_path):
    """The module's dashboard (its defaults) refuses writes and strange host names; one with
    --allow-writes, on a copy of its storage, refuses strange host names still."""
    folder, _, _, _, base, _ = browsed
    study_id = _get(base + "/api/studies")["study_summaries"][0]["study_id"]
    assert _ask(f"{base}/api/studies/{study_id}", "DELETE") == 403
    assert _ask(f"{base}/api/studies/{study_id}/rename", "POST") == 403
    assert _ask(f"{base}/api/studies/{study_id}/note", "PUT") == 403
    assert _ask(f"{base}/api/studies", host="attacker.example:8080") == 403  # DNS rebinding
    assert _ask(f"{base}/", host=f"localhost:{base.rsplit(':', 1)[1]}") == 200  # the page itself still opens
    assert _ask(f"{base}/api/studies/{study_id}", "HEAD") == 200
    assert [s["study_name"] for s in _get(base + "/api/studies")["study_summaries"]] == ["browse"]
    copy = tmp_path / "optuna.db"
    shutil.copyfile(folder / "optuna.db", copy)
    with _dashboard(tmp_path, f"sqlite:///{copy}", "--allow-writes", "--allowed-hosts", "trainbox,other") as (base, _):
        port = base.rsplit(":", 1)[1]
        assert _ask(f"{base}/api/studies/{study_id}", "DELETE", host="attacker.example:8080") == 403
        assert [s["study_name"] for s in _get(base + "/api/studies")["study_summaries"]] == ["browse"]
        assert _ask(f"{base}/api/studies", host=f"trainbox:{port}") == 200
        assert _ask(f"{base}/api/studies/{study_id}", "DELETE", host=f"127.0.0.1:{port}") == 204
        assert _get(base + "/api/studies")["study_summaries"] == []


def test_host_names_lose_their_port():
    from signlab.serving.dashboard import host_name

    assert [host_name(h) for h in ["127.0.0.1:8080", "[::1]:8080", "::1", "LocalHost.", "attacker.example:80", ""]] == [
        "127.0.0.1", "::1", "::1", "localhost", "attacker.example", ""]


def test_dashboard_refuses_a_missing_sqlite_file_without_creating_it(tmp_path):
    proc = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}", timeout=60)
    assert_one_line_error(proc, f"no study storage at {tmp_path / 'none.db'} (SQLite file not found)")
    assert not (tmp_path / "none.db").exists()
