"""Distributed studies on a real PostgreSQL server and a real `mlflow server` on 127.0.0.1:
two workers on one study, a worker killed with SIGKILL or SIGTERM mid-trial (marked slow),
and bad input (storage URLs, tracking URIs, CLI arguments) that gets a clear error, changes
nothing, and never shows a password (in this process, most without a server).

PostgreSQL: `.ci/run` starts a throwaway cluster and exports $SIGNLAB_TEST_POSTGRES_URL;
without it, these tests start their own with scripts/throwaway-postgres.sh (Debian's
`postgresql` package), and skip, saying why, where PostgreSQL is not installed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy
from helpers import free_port, mlflow_store, runs_by_role, subprocess_env, wait_for_http, wait_for_running_trials
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.runs.store import CLASSIC_ML, KIND_TAG, set_experiment_tag
from signlab.search.setup import Overrides
from signlab.search.study import run_study

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts/throwaway-postgres.sh"
FAST_STUDY = """\
study_name: {name}
family: {family}
n_trials: 4
max_epochs: {epochs}
subset: 10
validation: {{strategy: grouped, fraction: 0.2}}
pruner: {{type: none}}
heartbeat_interval: 1
grace_period: {grace}
retry_failed_trials: {retries}
fixed: {fixed}
space:
{space}
"""
SPACES = {  # where the family does not matter (sharing a study), the MLP trains and logs faster
    "cnn": "  filters: {type: int, low: 4, high: 32, log: true}\n"
           "  learning_rate: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}",
    "mlp": "  units: {type: int, low: 16, high: 64}\n"
           "  learning_rate: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}",
}
# An MLP that never stops early: its trials run all max_epochs (a long trial to SIGKILL mid-way,
# without TensorFlow in the worker).
NO_EARLY_STOP = "{patience: 1000}"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL superuser URL (with its password) on 127.0.0.1."""
    given = os.environ.get("SIGNLAB_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    folder = tmp_path_factory.mktemp("postgres")
    started = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=120)
    if started.returncode == 3:
        pytest.skip(f"PostgreSQL is not installed: {started.stderr.strip()}")
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], timeout=120)


def password_of(url: str) -> str:
    return sqlalchemy.engine.make_url(url).password


def new_database(postgres: str) -> str:
    """A fresh database on the server; its URL (same user and password)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return sqlalchemy.engine.make_url(postgres).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    """`signlab server` on 127.0.0.1 with a PostgreSQL backend store; (URL, its log file)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signlab", "server", "--backend-store-uri", new_database(postgres),
             "--artifacts-destination", str(folder / "artifacts"), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=folder)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health", proc, 120, log)
    yield url, log
    proc.terminate()
    proc.wait(timeout=60)


def fast_study(name: str, epochs: int = 1, retries: int = 0, grace: int = 10, family: str = "cnn",
               fixed: str = "{}") -> str:
    return FAST_STUDY.format(name=name, epochs=epochs, retries=retries, grace=grace, family=family, fixed=fixed,
                             space=SPACES[family])


def study_file(tmp: Path, name: str, epochs: int = 1, retries: int = 0, grace: int = 10, family: str = "cnn",
               fixed: str = "{}") -> Path:
    """A fast study file; `grace`: seconds without a heartbeat before a trial counts as dead
    (10 by default: a busy CI machine can delay a live worker's beats by several seconds)."""
    path = tmp / f"{name}.yaml"
    path.write_text(fast_study(name, epochs, retries, grace, family, fixed))
    return path


def signlab(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "signlab", *args], env=env or subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


def everything_logged(client: MlflowClient, experiment: str) -> str:
    """All params and tags of all runs of an experiment, as one text."""
    exp = client.get_experiment_by_name(experiment)
    parts = []
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        parts += [f"{k}={v}" for k, v in run.data.params.items()]
        parts += [f"{k}={v}" for k, v in run.data.tags.items()]
    return "\n".join(parts)


@pytest.mark.slow
def test_workers_creating_optunas_tables_at_once(postgres):
    """Workers that open one empty database at the same moment all get a working storage
    (with plain RDBStorage, the late ones can fail: they CREATE the same enum type)."""

    from signlab.search.storage import open_storage

    errors: list[str] = []
    for _ in range(3):
        url = new_database(postgres)
        barrier = threading.Barrier(4)

        def open_it(url: str = url, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                open_storage(url)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert optuna.get_all_study_names(url) == []
    assert errors == []


def at_once(call: Callable[[], None], n: int = 8) -> list[str]:
    """`call()` in `n` threads released together (the workers of a study starting at the same
    moment); the errors they raised."""
    barrier, errors = threading.Barrier(n), []

    def one() -> None:
        barrier.wait(timeout=30)
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(repr(exc)[:200])

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.slow
def test_workers_tagging_a_new_experiment_at_once(tracking_server):
    """Workers that start together all tag the experiment (its kind, the session note); MLflow's
    SQL store writes a tag by select-then-insert, so on a fresh experiment all but one of them
    used to fail on the tag's key (seen in CI: `study workers 2`, worker 2 exited with code 1)."""
    uri, _ = tracking_server
    client = MlflowClient(tracking_uri=uri)
    for _ in range(6):
        experiment_id = client.create_experiment(f"tag-race-{uuid.uuid4().hex[:8]}")
        errors = at_once(lambda experiment_id=experiment_id: set_experiment_tag(
            MlflowClient(tracking_uri=uri), experiment_id, KIND_TAG, CLASSIC_ML))
        assert errors == []
        assert client.get_experiment(experiment_id).tags[KIND_TAG] == CLASSIC_ML


RACE_SCRIPT = """\
import sys, time
import mlflow
from signlab.runs import store
uri, prefix, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
mlflow.set_tracking_uri(uri)
mlflow.tracking.MlflowClient().search_experiments(max_results=1)  # the REST store, loaded before the race
print("ready", flush=True)
start = float(sys.stdin.readline())  # given once every process is ready
for k in range(rounds):
    time.sleep(max(0.0, start + k - time.time()))  # every process at the same moment
    store.use_experiment(f"{prefix}-{k}")
    with mlflow.start_run(tags={"race": prefix}):
        pass
"""


@pytest.mark.slow
def test_processes_starting_a_new_experiment_at_once_all_run_in_it(tracking_server):
    """Processes that make the same new experiment active at once all start their runs in it.
    MLflow's `set_experiment(name)`, losing the creation race, returns the experiment without
    making it active (mlflow/mlflow#12259): seen in CI, one of two workers of a new study
    logged its trials to the Default experiment."""
    uri, _ = tracking_server
    prefix, n, rounds = f"exp-race-{uuid.uuid4().hex[:8]}", 4, 5
    procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, uri, prefix, str(rounds)], env=subprocess_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(n)]
    ready = [p.stdout.readline() for p in procs]  # each has imported MLflow and reached the server
    start = time.time() + 0.5
    for p in procs:
        if p.poll() is None:
            p.stdin.write(f"{start}\n")
            p.stdin.flush()  # communicate() closes it
    outputs = [line + finish(p, timeout=120) for line, p in zip(ready, procs, strict=True)]
    assert ready == ["ready\n"] * n, outputs
    assert [p.returncode for p in procs] == [0] * n, outputs
    client = MlflowClient(tracking_uri=uri)
    where = {}
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  f"tags.race = '{prefix}'", max_results=1000):
        name = client.get_experiment(run.info.experiment_id).name
        where[name] = where.get(name, 0) + 1
    assert where == {f"{prefix}-{k}": n for k in range(rounds)}


@pytest.mark.slow
def test_workers_logging_the_study_params_at_once(tracking_server):
    """Workers that start together all log the study's params on its shared parent run; the
    store checks, then inserts, so all but one used to fail on a param's key (seen with 32
    workers: `UniqueViolation` on `param_pk`, the worker exited 1 before its first trial)."""
    from signlab.runs import records

    uri, _ = tracking_server
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"param-race-{uuid.uuid4().hex[:8]}")
    mlflow.set_experiment(experiment_id=experiment_id)  # start_run(run_id) checks the active one
    params = {f"p{i}": i for i in range(15)}
    for _ in range(6):
        run_id = client.create_run(experiment_id).info.run_id

        def log(run_id: str = run_id) -> None:
            with mlflow.start_run(run_id=run_id):  # the active run is per thread
                records.log_params(params)

        assert at_once(log) == []
        assert client.get_run(run_id).data.params == {k: str(v) for k, v in params.items()}


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_two_workers_share_one_study(postgres, tracking_server, tmp_path):
    uri, server_log = tracking_server
    storage = new_database(postgres)
    secret = password_of(storage)
    path = study_file(tmp_path, "two_workers", family="mlp")
    proc = signlab("study", "workers", "2", str(path), "--storage", storage, "--tracking-uri", uri,
                   "--n-trials", "4", cwd=tmp_path)
    output = finish(proc)
    assert proc.returncode == 0, output[-4000:]
    assert "2 workers on the study (0 trials so far, stopping at 4 in all)" in output

    study = optuna.load_study(study_name="two_workers", storage=storage)
    assert len(study.trials) == 4, "the cap is the study's total, not per worker"
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert optuna.get_all_study_names(storage) == ["two_workers"], "no lock study left behind"

    client = MlflowClient(tracking_uri=uri)
    roles = runs_by_role(client, "two_workers")
    (parent,) = roles["study"]
    assert parent.info.status == "FINISHED"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    trials = roles["trial"]
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [0, 1, 2, 3], "one run per trial"
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert by_run[run.info.run_id].number == int(run.data.tags["trial_number"])
    workers = {r.data.tags["signlab.worker"] for r in trials}
    assert len(workers) == 2, f"both workers ran trials: {workers}"
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4, "workers drew different trials"
    assert "***" in parent.data.params["storage"]
    assert_no_secret(secret, output, server_log.read_text(), everything_logged(client, "two_workers"),
                     str(study.user_attrs), str([t.user_attrs for t in study.trials]))


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_independent_workers_share_one_parent_run(postgres, tracking_server, tmp_path):
    """Two `study run` processes started at once on a new study (as on two machines): one
    parent run, created by exactly one of them; the cap (2, where each alone would run the
    file's 4) holds across both."""
    uri, _ = tracking_server
    storage = new_database(postgres)
    path = study_file(tmp_path, "independent", family="mlp")
    procs = [signlab("study", "run", str(path), "--storage", storage, "--tracking-uri", uri, "--max-total-trials", "2",
                     "--worker", str(k), "--no-progress", cwd=tmp_path) for k in (1, 2)]
    outputs = [finish(p) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    study = optuna.load_study(study_name="independent", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1]
    assert optuna.get_all_study_names(storage) == ["independent"]
    roles = runs_by_role(MlflowClient(tracking_uri=uri), "independent")
    (parent,) = roles["study"]
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    trials = [(t.number, t.state.name, t.params, t.user_attrs, t.system_attrs) for t in study.trials]
    assert sorted(r.data.tags["mlflow.parentRunId"] for r in roles["trial"]) == [parent.info.run_id] * 2, (
        trials, {k: [r.info.run_name for r in v] for k, v in roles.items()}, outputs)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
@pytest.mark.slow
def test_sigkill_mid_trial_then_another_worker(backend, request, tmp_path, data_files):
    """Heartbeats work on both: PostgreSQL with the tracking server, SQLite for both stores.
    The killed worker is a process of its own, its MLP trials long; the next worker runs in
    this process, its trials 1 epoch (what it does, finding the dead worker's trial and run by
    their missing heartbeat, ending both and retrying the trial, is not about processes; nor
    is the family: a CNN's interrupted trials are test_sigterm_ends_the_run_killed_...'s)."""
    if backend == "postgresql":
        uri, _ = request.getfixturevalue("tracking_server")
        storage = new_database(request.getfixturevalue("postgres"))
    else:
        uri, storage = mlflow_store(tmp_path), f"sqlite:///{tmp_path / 'optuna.db'}"
    path = study_file(tmp_path, "killed", epochs=1000, retries=1, grace=3, family="mlp", fixed=NO_EARLY_STOP)
    first = signlab("study", "run", str(path), "--storage", storage, "--tracking-uri", uri, "--n-trials", "3",
                    "--no-progress", cwd=tmp_path)
    victim = wait_for_running_trials(storage, "killed", first)[0]
    time.sleep(1.0)  # well inside the trial: the run exists, epochs are running
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    client = MlflowClient(tracking_uri=uri)
    dead_run = victim.user_attrs["mlflow_run_id"]
    assert client.get_run(dead_run).info.status == "RUNNING", "nobody could end it: the worker died"
    before = {t.number: t.state for t in optuna.load_study(study_name="killed", storage=storage).trials}
    assert before[victim.number] == optuna.trial.TrialState.RUNNING
    time.sleep(3.5)  # the grace period (3 s) passes without a heartbeat

    # `signlab study run killed.yaml --n-trials 2 --max-epochs 1`: returns, so nothing failed
    run_study(path, Overrides(n_trials=2, max_epochs=1), storage=storage, tracking_uri=uri, files=data_files,
              progress=False, echo=lambda line: None)

    study = optuna.load_study(study_name="killed", storage=storage)
    states = {t.number: t for t in study.trials}
    assert states[victim.number].state == optuna.trial.TrialState.FAIL
    dead = client.get_run(dead_run)
    assert dead.info.status == "FAILED" and dead.data.tags["trial_state"] == "FAIL"
    assert "no heartbeat" in dead.data.tags["signlab.repaired"]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == victim.params
    # every trial finished before the kill is intact; the new worker added exactly 2
    for number, state in before.items():
        if number != victim.number:
            assert states[number].state == state == optuna.trial.TrialState.COMPLETE
    assert len(study.trials) == len(before) + 2
    roles = runs_by_role(client, "killed")
    assert not [r for r in roles["trial"] + roles["study"] if r.info.status == "RUNNING"]
    runs = {r.info.run_id: r for r in roles["trial"]}
    assert len(runs) == len(study.trials), "one run per trial, none duplicated"
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["trial_state"] == trial.state.name
        assert run.info.status == {"COMPLETE": "FINISHED", "FAIL": "FAILED"}[trial.state.name]


# Ctrl-C alone: tests/test_parallel.py (the launcher) and test_console.py (inside Keras' training)
@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM)],
                         ids=["SIGTERM", "SIGINT-then-SIGTERM"])
@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_sigterm_ends_the_run_killed_and_the_trial_failed(signals, postgres, tracking_server, tmp_path):
    """One line says what was left in which state; exit code 128 + the signal (143, or 130
    for Ctrl-C). A second signal (`mlflow run` sends SIGTERM right after the terminal's
    Ctrl-C) does not cut the clean-up short."""
    uri, _ = tracking_server
    storage = new_database(postgres)
    name = "terminated_" + "_".join(signal.Signals(s).name.lower() for s in signals)
    path = study_file(tmp_path, name, epochs=6)
    proc = signlab("study", "run", str(path), "--storage", storage, "--tracking-uri", uri, "--n-trials", "2",
                   "--no-progress", cwd=tmp_path)
    victim = wait_for_running_trials(storage, name, proc)[0]
    time.sleep(1.0)
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.05)
    output = finish(proc, timeout=120)
    # 130/143, or death by the signal itself, which a shell reports as 128 + the signal too:
    # under `python -m`, CPython ends the process that way if a Ctrl-C ever escaped a string
    # `exec`/`eval` (run_eval_code_obj sets a flag Py_RunMain checks), even one handled later
    assert proc.returncode in (128 + signals[0], -signals[0]), output[-3000:]
    study = optuna.load_study(study_name=name, storage=storage)
    assert study.trials[victim.number].state == optuna.trial.TrialState.FAIL
    assert len(study.trials) == victim.number + 1, "no trial started after SIGTERM"
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(victim.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["trial_state"] == "FAIL", output[-3000:]
    (parent,) = runs_by_role(client, name)["study"]
    assert parent.info.status == "KILLED"
    assert "Traceback" not in output
    what = "SIGTERM" if signals[0] == signal.SIGTERM else "SIGINT (Ctrl-C)"
    mlflow_links = ("🏃 View run ", "🧪 View experiment ")  # MLflow prints these for http:// tracking URIs
    assert [line for line in output.splitlines() if not line.startswith(("trial ", *mlflow_links))] == [
        f"interrupted by {what}: MLflow run {run.info.run_name} ({run.info.run_id}) ended KILLED; "
        f"trial {victim.number} ended FAIL; MLflow run {name} ({parent.info.run_id}) ended KILLED; "
        "the same command resumes the study"]


# ---- bad input: one clear line, exit code 2, nothing changed, no password ------------------
def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return study_file(tmp_path, "tiny")


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_storage_that_refuses_connections(tiny, tmp_path):
    secret = "s3cr3t-Pa55"
    result = cli("study", "run", str(tiny), "--storage", f"postgresql+psycopg://signlab:{secret}@127.0.0.1:1/optuna",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.exit_code == 2
    assert "cannot open study storage PostgreSQL at 127.0.0.1:1, database optuna, user signlab" in result.output
    assert "Connection refused" in result.output and "untouched" in result.output
    assert secret not in result.output and "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_storage_with_a_wrong_password_or_database(postgres, tiny, tmp_path):
    parsed = sqlalchemy.engine.make_url(postgres)
    wrong = parsed.set(password="not-the-password").render_as_string(hide_password=False)
    result = cli("study", "run", str(tiny), "--storage", wrong, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.exit_code == 2
    assert f"PostgreSQL at 127.0.0.1:{parsed.port}" in result.output
    assert "password authentication failed" in result.output and "not-the-password" not in result.output
    missing = parsed.set(database="no_such_db").render_as_string(hide_password=False)
    result = cli("study", "run", str(tiny), "--storage", missing, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.exit_code == 2 and 'database "no_such_db" does not exist' in result.output
    assert parsed.password not in result.output


@pytest.mark.parametrize("url, expected", [
    ("not a url", "is not a database URL; expected e.g. sqlite:///optuna.db"),
    ("mysql://u:pw@127.0.0.1/x", "no database driver for 'mysql' is installed"),
    ("sqlite:////no/such/folder/optuna.db", "SQLite file /no/such/folder/optuna.db"),
])
@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_storage_urls_that_cannot_work(url, expected, tiny, tmp_path):
    result = cli("study", "run", str(tiny), "--storage", url, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.exit_code == 2 and expected in result.output, result.output
    assert ":pw@" not in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_tracking_server_that_does_not_answer_changes_nothing(tiny, tmp_path):
    storage = tmp_path / "optuna.db"
    result = cli("study", "run", str(tiny), "--storage", f"sqlite:///{storage}",
                 "--tracking-uri", "http://user:hunter2@127.0.0.1:1")
    assert result.exit_code == 2
    assert "MLflow tracking server http://user:***@127.0.0.1:1 does not answer" in result.output
    assert "hunter2" not in result.output and not storage.exists(), "no study was created"


@pytest.mark.parametrize("command", [["study", "run"], ["study", "workers", "2"]])
def test_missing_data_creates_no_study(command, tiny, tmp_path):
    storage = tmp_path / "optuna.db"
    result = cli(*command, str(tiny), "--storage", f"sqlite:///{storage}", "--tracking-uri",
                 f"sqlite:///{tmp_path / 'mlflow.db'}", "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert f"sign_mnist_train.csv not found in {tmp_path / 'empty'}" in result.output
    assert not storage.exists() and not (tmp_path / "mlflow.db").exists()


def test_server_with_a_backend_store_it_cannot_open(tmp_path):
    result = cli("server", "--backend-store-uri", "postgresql://signlab:topsecret@127.0.0.1:1/mlflow")
    assert result.exit_code == 2
    assert "cannot open MLflow backend store, PostgreSQL at 127.0.0.1:1, database mlflow" in result.output
    assert "topsecret" not in result.output


@pytest.mark.parametrize("args, expected", [
    (["study", "workers", "0", "{study}"], "Invalid value for 'n': Input should be greater than or equal to 1"),
    (["study", "workers", "65", "{study}"], "Invalid value for 'n': Input should be less than or equal to 64"),
    (["study", "run", "{study}", "--max-total-trials", "0"], "Invalid value for '--max-total-trials': Input should be greater"),
    (["study", "run", "{study}", "--worker", "0"], "Invalid value for '--worker' (env var: 'SIGNLAB_WORKER')"),
    (["server", "--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
])
def test_cli_arguments_out_of_range(args, expected, tiny):
    result = cli(*[a.format(study=tiny) for a in args])
    assert result.exit_code == 2
    assert expected in re.sub(r"[\s│]+", " ", result.output), result.output


def test_heartbeat_settings_are_checked(tmp_path):
    path = tmp_path / "bad.yaml"
    text = fast_study("bad", grace=3)
    path.write_text(text.replace("heartbeat_interval: 1", "heartbeat_interval: 2"))
    result = cli("study", "check", str(path))
    assert result.exit_code == 2
    assert f"{path}: grace_period: 3 s must be at least twice heartbeat_interval (2 s)" in result.output
    path.write_text(text.replace("heartbeat_interval: 1", "heartbeat_interval: 0"))
    result = cli("study", "check", str(path))
    assert result.exit_code == 2
    assert f"{path}: heartbeat_interval: Input should be greater than or equal to 1 (got 0)" in result.output


def test_a_bad_worker_number(tiny, tmp_path):
    result = cli("study", "run", str(tiny), "--storage", f"sqlite:///{tmp_path / 'o.db'}",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", env={"SIGNLAB_WORKER": "x"})
    assert result.exit_code == 2
    assert "Invalid value for '--worker' (env var: 'SIGNLAB_WORKER'): Input should be a valid integer" in \
        re.sub(r"[\s│]+", " ", result.output)


@pytest.mark.slow
def test_a_duplicate_key_is_known_by_postgresqls_sqlstate(postgres):
    from test_stores import check_duplicate_keys_by_code

    check_duplicate_keys_by_code(postgres)

