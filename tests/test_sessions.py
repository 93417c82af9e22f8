"""Sessions of a study, one after another or at once: each draws new trials, a set of
params already tried is not trained again unless asked, new SQLite stores are set up by
one process at a time, and each summary counts its own trials."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import mlflow_store, runs_by_role, subprocess_env
from mlflow.tracking import MlflowClient

from signlab.config import machine_cores
from signlab.contract import SAME_AS_ATTR, THREADS_TAG, WORKER_TAG
from signlab.errors import UserError
from signlab.search.setup import Overrides, make_sampler
from signlab.search.space import trial_spec
from signlab.search.study import run_study
from signlab.search.study_config import load_study_config
from signlab.stores import setup_lock

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "studies/cnn.yaml"
TINY = """\
study_name: {name}
family: {family}
max_epochs: 1
subset: {subset}
pruner: {{type: none}}
sampler: {{type: tpe, seed: 1}}
space:
{space}
"""


def drawn(study: optuna.Study, cfg, n: int = 1) -> list[dict]:  # noqa: ANN001 (StudyConfig)
    """The params of `n` new trials, drawn without training (each then told as failed)."""
    params = []
    for _ in range(n):
        trial = study.ask()
        trial_spec(trial, cfg)
        params.append(trial.params)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return params


def test_each_trial_draws_with_a_seed_of_its_own():
    """Every session (a new process: a new sampler on the stored study) draws new trials,
    also two at once; the same study started again from scratch draws the same ones. With
    the study file's seed alone, each session's first draw was the same."""
    cfg = load_study_config(CNN)
    storage = optuna.storages.InMemoryStorage()

    def session() -> optuna.Study:
        return optuna.create_study(study_name="s", storage=storage, sampler=make_sampler(cfg), direction="maximize",
                                   load_if_exists=True)

    first, resumed = drawn(session(), cfg), drawn(session(), cfg)
    worker_a, worker_b = session(), session()  # started at the same moment, neither with --worker
    at_once = [worker_a.ask(), worker_b.ask()]
    for trial in at_once:
        trial_spec(trial, cfg)
    assert first != resumed and at_once[0].params != at_once[1].params
    assert len({str(p) for p in [*first, *resumed, at_once[0].params, at_once[1].params]}) == 4
    scratch = drawn(optuna.create_study(sampler=make_sampler(cfg), direction="maximize"), cfg, 2)
    assert scratch == first + resumed


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One Optuna and one MLflow SQLite store for this module's in-process studies (each its
    own study and experiment)."""
    folder = tmp_path_factory.mktemp("session-stores")
    return dict(storage=f"sqlite:///{folder / 'optuna.db'}", tracking_uri=mlflow_store(folder))


@pytest.mark.slow
def test_the_same_command_twice_adds_new_params(stores, data_files):
    """`signlab study run studies/cnn.yaml --n-trials 1 --max-epochs 1 --subset 5 --refit-seeds 0`,
    twice (the refits cnn.yaml asks for are tested in test_refit.py and test_mlproject.py)."""
    lines: list[str] = []
    for _ in range(2):
        study = run_study(CNN, Overrides(n_trials=1, max_epochs=1, subset=5, refit_seeds=0), progress=False,
                          echo=lines.append, files=data_files, **stores)
    first, second = study.trials
    assert first.params != second.params
    assert [line for line in lines if "new trials" in line] == [
        "study cnn_study: 1 new trials, 1 in all (1 complete, 0 pruned, 0 failed)",
        "study cnn_study: 1 new trials, 2 in all (2 complete, 0 pruned, 0 failed)"]


@pytest.mark.slow
def test_same_params_are_not_trained_again_unless_asked(stores, data_files, tmp_path, capsys):
    """A space with one point: the second trial takes the first one's result without a run
    of its own; a trial queued with enqueue_trial (asked for) is trained again."""
    storage, uri = stores["storage"], stores["tracking_uri"]
    path = tmp_path / "one_point.yaml"
    path.write_text(TINY.format(name="one_point", family="mlp", subset=8,
                                space="  units: {type: int, low: 16, high: 16}"))
    study = run_study(path, Overrides(n_trials=2), storage=storage, tracking_uri=uri, files=data_files)
    first, second = study.trials
    assert first.params == second.params and second.state == optuna.trial.TrialState.COMPLETE
    assert second.value == first.value and second.user_attrs[SAME_AS_ATTR] == 0
    assert second.user_attrs["mlflow_run_id"] == first.user_attrs["mlflow_run_id"]
    assert "same params as trial 0: not trained again" in capsys.readouterr().out
    client = MlflowClient(uri)
    assert len(runs_by_role(client, "one_point")["trial"]) == 1

    study.enqueue_trial(first.params)
    study = run_study(path, Overrides(n_trials=1), storage=storage, tracking_uri=uri, progress=False, files=data_files)
    third = study.trials[2]
    assert third.params == first.params and SAME_AS_ATTR not in third.user_attrs
    assert third.user_attrs["mlflow_run_id"] != first.user_attrs["mlflow_run_id"]
    assert len(runs_by_role(client, "one_point")["trial"]) == 2


def test_setup_lock_waits_a_bounded_time(tmp_path):
    """While another process sets a SQLite file up, the next waits, then says so in one line."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with open(tmp_path / "optuna.db.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match=r"SQLite file .*optuna\.db: another process has been setting it up "
                                            r"for 0 s \(it holds .*optuna\.db\.lock\)"):
            with setup_lock(url, wait=0.3):
                pass
        fcntl.flock(held, fcntl.LOCK_UN)
    with setup_lock(url) as locked:
        assert locked
    with setup_lock("postgresql://u@127.0.0.1/db") as locked, setup_lock("sqlite://") as in_memory:
        assert not locked and not in_memory


@pytest.mark.slow
def test_processes_start_at_once_in_an_empty_folder(tmp_path, data_files):
    """Three `signlab study run` started together where no mlflow.db or optuna.db exists,
    two on one study (no --worker) and one on another. Without the set-up lock, most such
    starts failed on MLflow's or Optuna's schema migration (`table _alembic_tmp_tags already
    exists`, `UNIQUE constraint failed: alembic_version.version_num`), some leaving mlflow.db
    broken for every later command. Now: all exit 0, each summary counts its own trial,
    the two workers drew different params, and a later session in the folder works (in this
    process: what it checks is the stores the three left, not starting at once)."""
    work = tmp_path / "work"
    work.mkdir()
    space = "  units: {type: int, low: 16, high: 64}\n  learning_rate: {type: float, low: 1.0e-3, high: 3.0e-3}"
    for name in ("shared", "other"):
        (tmp_path / f"{name}.yaml").write_text(TINY.format(name=name, family="mlp", subset=10, space=space))

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "signlab", "study", "run", str(tmp_path / f"{name}.yaml"), "--n-trials", "1",
             "--storage", "sqlite:///optuna.db", "--tracking-uri", "sqlite:///mlflow.db", "--no-progress"],
            cwd=work, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [start(name) for name in ("shared", "shared", "other")]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n=====\n".join(out[-3000:] for out in outputs)
    for name, out in zip(("shared", "shared", "other"), outputs, strict=True):
        assert f"study {name}: 1 new trials, " in out
        # piped output (CI logs): each trial's line, no progress bar (tests/test_progress.py: a terminal's)
        assert " COMPLETE val_accuracy " in out and "trial/s" not in out and "epoch 1/" not in out, out

    lines: list[str] = []
    run_study(tmp_path / "shared.yaml", Overrides(n_trials=1), storage=f"sqlite:///{work / 'optuna.db'}",
              tracking_uri=f"sqlite:///{work / 'mlflow.db'}", files=data_files, progress=False, echo=lines.append)
    assert any(line.startswith("study shared: 1 new trials, 3 in all (3 complete") for line in lines), lines
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{work / 'optuna.db'}")
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3
    roles = runs_by_role(MlflowClient(f"sqlite:///{work / 'mlflow.db'}"), "shared")
    assert len(roles["study"]) == 1 and len(roles["trial"]) == 3
    # each child's trial records the BLAS threads its MLP computed with (the test process's
    # share of the cores, which the children inherit: tests/conftest.py), else every core
    children = [r for r in roles["trial"] if not r.data.tags[WORKER_TAG].endswith(f":{os.getpid()}")]
    assert [r.data.tags[THREADS_TAG] for r in children] == [os.environ.get("OPENBLAS_NUM_THREADS",
                                                                          str(machine_cores()))] * 2


CLAIM = """\
import sys, optuna
from signlab.search.optuna_internals import TrialCapReached
from signlab.search.storage import open_storage
rdb = open_storage(sys.argv[1], cap=40)
study = optuna.load_study(study_name="capped", storage=rdb)
made = 0
try:
    while True:
        trial = study.ask()
        made += 1
        study.tell(trial, 0.0)
except TrialCapReached:
    print(made)
"""


@pytest.mark.slow
def test_the_trial_cap_holds_when_workers_race_for_the_last_slot(tmp_path):
    """Six processes asking for trials as fast as they can: exactly the cap is made
    (Optuna's MaxTrialsCallback counts only when a trial ends, and overshoots here)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="capped", storage=url)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM, url], stdout=subprocess.PIPE, text=True,
                              env=subprocess_env()) for _ in range(6)]
    made = [int(proc.communicate(timeout=120)[0]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(made) == 40
    study = optuna.load_study(study_name="capped", storage=url)
    assert sorted(t.number for t in study.trials) == list(range(40))
    assert optuna.get_all_study_names(url) == ["capped"], "no lock study left behind"
