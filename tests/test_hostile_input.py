"""Hostile input that costs nothing (issue 26): study files past any sensible size, depth or
alias count, absurd budgets, lock studies a user's study cannot be mistaken for, and stores
that are damaged or lost. Each is one `error:` line and exit code 2, from a real `signlab`
process, against real SQLite files; nothing is written where something was refused."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import optuna
import pytest
from helpers import assert_one_line_error, mlflow_store, run_cli, tiny_study
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.contract import PARENT_ATTR
from signlab.errors import UserError, preview
from signlab.search.storage import lock_name, study_lock
from signlab.search.study import run_study
from signlab.search.study_config import load_study_config

PROCESS_SECONDS = 60  # a child's whole life, import included (generous: CI machines are shared)
LOAD_SECONDS = 2.0  # the loading itself, in this process: "within a second", with room for a busy machine
GOOD = "study_name: x\nfamily: mlp\nspace: {units: {type: int, low: 16, high: 64}}\n"


def _alias_bomb(path: Path) -> Path:
    """Nested aliases, 9**10 integers once expanded (issue 26's 695-byte file, on top of a valid study)."""
    lines = [GOOD.strip(), "a0: &a0 [1,1,1,1,1,1,1,1,1]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path.write_text("\n".join(lines + ["fixed: {dense_units: *a9}"]) + "\n")
    return path


def _fifty_mb_list(path: Path) -> Path:
    with open(path, "w") as f:
        f.write(GOOD + "fixed: {units: [")
        for _ in range(50):
            f.write("1," * (512 * 1024))
        f.write("1]}\n")
    return path


HOSTILE = {  # name: (writes the file, words its one line holds)
    "alias bomb": (_alias_bomb, ["line 5", "YAML aliases", "not allowed"]),
    "50 MB list": (_fifty_mb_list, ["over 1,000,000 bytes"]),
    "100,000 nested [": (lambda p: p.write_text("[" * 100_000) and p, ["not valid YAML", "nesting"]),
    "60 nested [": (lambda p: p.write_text("[" * 60 + "]" * 60) and p, ["nested more than 50 levels"]),
    "200,000 values": (lambda p: p.write_text(GOOD + "fixed: {units: [" + "1," * 200_000 + "1]}\n") and p,
                         ["more than 10,000 values"]),
    "timeout .inf": (lambda p: p.write_text(GOOD + "timeout: .inf\n") and p, ["timeout", "finite number"]),
    "bound .nan": (lambda p: p.write_text(GOOD.replace("low: 16", "low: .nan")) and p, ["space.units.low", "finite"]),
    "fixed .inf": (lambda p: p.write_text(GOOD + "fixed: {alpha: .inf}\n") and p, ["fixed.alpha", "not a finite number"]),
    "n_trials 1e12": (lambda p: p.write_text(GOOD + "n_trials: 1e12\n") and p, ["n_trials", "valid integer"]),
    "n_trials 1.0e+12": (lambda p: p.write_text(GOOD + "n_trials: 1.0e+12\n") and p,
                         ["n_trials", "less than or equal to 100000"]),
    "timeout of a year": (lambda p: p.write_text(GOOD + "timeout: 31536000\n") and p,
                          ["timeout", "less than or equal to 2592000"]),
    "max_epochs 10**9": (lambda p: p.write_text(GOOD + "max_epochs: 1000000000\n") and p,
                         ["max_epochs", "less than or equal to 1000"]),
    "a 500 kB bad value": (lambda p: p.write_text(GOOD.replace("family: mlp", "family: " + "x" * 500_000)) and p,
                           ["family", "Input should be 'cnn' or 'mlp'", "..."]),
    "a reserved name": (lambda p: p.write_text(GOOD.replace("study_name: x", "study_name: 'signlab-lock:x'")) and p,
                        ["study_name", "'signlab-lock:'", "signlab's own"]),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_study_file_is_refused_at_once(tmp_path, name):
    write, words = HOSTILE[name]
    path = write(tmp_path / "study.yaml")
    with pytest.raises(UserError):
        load_study_config(_alias_bomb(tmp_path / "warm.yaml"))  # pydantic's and yaml's first use, not timed
    started = time.perf_counter()
    with pytest.raises(UserError) as caught:
        load_study_config(path)
    assert time.perf_counter() - started < LOAD_SECONDS
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message[:1000]
    assert message.startswith(f"{path}: ") and all(w in message for w in words), message


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alias bomb", "50 MB list", "100,000 nested [", "timeout .inf", "n_trials 1.0e+12"])
def test_study_check_refuses_a_hostile_file_in_one_line(tmp_path, name):
    write, words = HOSTILE[name]
    path = write(tmp_path / "study.yaml")
    started = time.perf_counter()
    proc = run_cli("study", "check", str(path), timeout=PROCESS_SECONDS, cwd=tmp_path)
    assert_one_line_error(proc, str(path), *words)
    assert time.perf_counter() - started < PROCESS_SECONDS


def test_a_bad_value_is_shown_cut_short():
    shown = preview([list(range(1000))] * 1000)
    assert len(shown) <= 80 and shown.startswith("[[0, 1, 2")
    assert "..." in preview("x" * 10**6) and len(preview("x" * 10**6)) <= 80
    assert preview(0.5) == "0.5"


def test_a_stale_lock_names_signlabs_lock_not_a_users_study(tmp_path):
    """The lock studies are `signlab-lock:<study>:<what>`, a prefix no user study may take: a
    user's study named like an old lock (`foo:parent-lock`) blocks nothing, and a stale lock's
    message names the lock study alone."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    for users in ("foo:parent-lock", "foo:trial-lock", "foo"):
        optuna.create_study(study_name=users, storage=storage)
    started = time.perf_counter()
    with study_lock(storage, lock_name("foo", "parent"), timeout=5):
        assert time.perf_counter() - started < 5
        with pytest.raises(UserError) as caught, study_lock(storage, lock_name("foo", "parent"), timeout=0.5):
            pass  # pragma: no cover (the lock is held)
    message = str(caught.value)
    assert "signlab's lock study 'signlab-lock:foo:parent'" in message and "not one of your studies" in message
    assert "--study-name signlab-lock:foo:parent " in message, message
    assert {s.study_name for s in optuna.get_all_study_summaries(storage)} == {"foo", "foo:parent-lock", "foo:trial-lock"}


@pytest.mark.slow
def test_a_reserved_name_on_the_command_line(tmp_path):
    storage, db = tmp_path / "optuna.db", tmp_path / "mlflow.db"
    proc = run_cli("study", "run", str(tiny_study(tmp_path)), "--study-name", "signlab-lock:tiny:parent",
                   "--storage", f"sqlite:///{storage}", "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_line_error(proc, "--study-name signlab-lock:tiny:parent", "signlab's own")
    assert not storage.exists() and not db.exists()


def _truncate(path: Path) -> bytes:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return path.read_bytes()


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_a_truncated_mlflow_database(tmp_path):
    storage, db = tmp_path / "optuna.db", tmp_path / "mlflow.db"
    client = MlflowClient(mlflow_store(tmp_path))
    run = client.create_run(client.create_experiment("tiny"))
    client.log_param(run.info.run_id, "a", 1)
    before = _truncate(db)
    with pytest.raises(sqlite3.DatabaseError), sqlite3.connect(db) as con:
        con.execute("PRAGMA quick_check").fetchone()  # SQLite agrees it is damaged
    proc = run_cli("study", "run", str(tiny_study(tmp_path)), "--storage", f"sqlite:///{storage}",
                   "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_line_error(proc, f"MLflow tracking store SQLite file {db} is damaged", "nothing was changed")
    assert db.read_bytes() == before and not storage.exists(), "nothing was written anywhere"
    proc = run_cli("train", "--subset", "5", "--epochs", "1", "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_line_error(proc, f"SQLite file {db} is damaged")
    assert db.read_bytes() == before


@pytest.mark.slow
def test_a_study_whose_parent_run_is_gone_needs_new_parent(tmp_path, data_files):
    """mlflow.db deleted beside an existing optuna.db: the trials' runs are gone, so the study
    stops in one line until --new-parent says to go on under a new parent run. A user's
    studies named like the old lock studies are there all along and block nothing. The
    refusals come from real `signlab` processes; the studies that run, in this one (whose
    MLflow keeps its SQLite connections: so the first run is tracked in a file of its own, and
    the mlflow.db the commands are given is, as after its deletion, absent)."""
    storage, db = tmp_path / "optuna.db", tmp_path / "mlflow.db"
    stores = ["--storage", f"sqlite:///{storage}", "--tracking-uri", f"sqlite:///{db}", "--no-progress"]
    study = tiny_study(tmp_path, n_trials=1)
    for users in ("tiny:parent-lock", "tiny:trial-lock"):
        optuna.create_study(study_name=users, storage=f"sqlite:///{storage}")
    started = time.perf_counter()
    first = run_study(study, storage=f"sqlite:///{storage}", tracking_uri=mlflow_store(tmp_path, "deleted.db"),
                      files=data_files, progress=False)
    assert [t.state for t in first.trials] == [optuna.trial.TrialState.COMPLETE]
    assert time.perf_counter() - started < 100, "no wait on the user's studies (a lock waits 120 s)"
    old_parent = optuna.load_study(study_name="tiny", storage=f"sqlite:///{storage}").user_attrs[PARENT_ATTR]

    proc = run_cli("study", "run", str(study), *stores, cwd=tmp_path)
    assert_one_line_error(proc, "study 'tiny' records its parent run " + old_parent, "--new-parent", "Nothing was run")
    assert not db.exists(), "refused before a new mlflow.db was made"

    MlflowClient(mlflow_store(tmp_path)).create_experiment("elsewhere")  # a store, but not the study's
    proc = run_cli("study", "run", str(study), *stores, cwd=tmp_path)
    assert_one_line_error(proc, old_parent, "does not hold", "--new-parent")
    assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{storage}").trials) == 1

    result = CliRunner().invoke(app, ["study", "run", str(study), "--new-parent", *stores])
    assert result.exit_code == 0, result.output
    resumed = optuna.load_study(study_name="tiny", storage=f"sqlite:///{storage}")
    new_parent = resumed.user_attrs[PARENT_ATTR]
    assert new_parent != old_parent and len(resumed.trials) == 2
    assert MlflowClient(f"sqlite:///{db}").get_run(new_parent).info.status == "FINISHED"
