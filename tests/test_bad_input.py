"""Bad input that used to end in a traceback: one line naming what is wrong, exit code 2,
and nothing left behind (no run, no study, no file). Each command runs as a real process."""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import optuna
import pytest
from helpers import assert_one_line_error, run_cli, tiny_study
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # each test starts signlab in a child process


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return tiny_study(tmp_path)


def test_negative_seed_for_train(tmp_path):
    db = tmp_path / "mlflow.db"
    proc = run_cli("train", "--seed", "-1", "--subset", "10", "--epochs", "1", "--tracking-uri", f"sqlite:///{db}",
                   cwd=tmp_path)
    assert_one_line_error(proc, "--seed -1", "0 or more")
    assert not db.exists(), "no run was started"


def test_negative_seed_for_a_study(tiny, tmp_path):
    storage, db = tmp_path / "optuna.db", tmp_path / "mlflow.db"
    proc = run_cli("study", "run", str(tiny), "--seed", "-1", "--storage", f"sqlite:///{storage}",
                   "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_line_error(proc, "--seed -1", "greater than or equal to 0")
    assert not storage.exists() and not db.exists(), "no study and no run"


def test_a_spec_keras_cannot_build_is_refused_before_the_run(tmp_path):
    db = tmp_path / "mlflow.db"
    proc = run_cli("train", "--set", "dense_units=[0]", "--subset", "10", "--epochs", "1",
                   "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_line_error(proc, "dense_units.0", "greater than or equal to 1", "(got 0)")
    proc = run_cli("train", "--set", "blocks=[{filters: 8, padding: valid, kernel_size: 7}, "
                   "{filters: 8, padding: valid, kernel_size: 7}, {filters: 8, padding: valid, kernel_size: 7}]",
                   "--subset", "10", "--epochs", "1", "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert_one_line_error(proc, "blocks.2: nothing of the 28x28 image is left")
    assert not db.exists(), "no run was started, so none was left FAILED"


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels (tiny on disk; PIL refuses it on open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def test_a_huge_image_to_predict(tmp_path):
    huge = _png_header_only(tmp_path / "huge.png", 30_000, 30_000)
    proc = run_cli("predict", str(huge), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert_one_line_error(proc, str(huge), "too large", "900000000 pixels")


def test_profile_output_that_is_a_file(tmp_path, data_dir):
    target = tmp_path / "profile.txt"
    target.write_text("mine")
    proc = run_cli("data", "profile", "--data-dir", str(data_dir), "--output", str(target), cwd=tmp_path)
    assert_one_line_error(proc, str(target), "is a file; expected a folder")
    assert target.read_text() == "mine"


def _corrupt_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table` (a SQLite b-tree page) with garbage."""
    with sqlite3.connect(db) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)


@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_a_corrupt_optuna_database(tiny, tmp_path):
    storage, db = tmp_path / "optuna.db", tmp_path / "mlflow.db"
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{storage}", direction="maximize")
    for value in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(params={"units_1": 16}, value=value,
                                                  distributions={"units_1": optuna.distributions.IntDistribution(16, 64)}))
    del study
    _corrupt_table(storage, "trials")
    before = storage.read_bytes()
    proc = run_cli("study", "run", str(tiny), "--storage", f"sqlite:///{storage}", "--tracking-uri", f"sqlite:///{db}",
                   cwd=tmp_path)
    assert_one_line_error(proc, f"SQLite file {storage} is not a usable Optuna database",
                          "database disk image is malformed")
    assert storage.read_bytes() == before and not db.exists(), "nothing was written anywhere"


@pytest.fixture(params=["sqlite read-only URI", "read-only file"])
def read_only_tracking(request, tmp_path) -> str:
    """A tracking URI to an MLflow database (with the experiment `tiny`) that refuses writes:
    SQLite's mode=ro, or a read-only file (chattr +i for root, whom chmod does not stop)."""
    db = tmp_path / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").create_experiment("tiny")
    if request.param == "sqlite read-only URI":
        yield f"sqlite:///file:{db}?mode=ro&uri=true"
        return
    db.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is refused: no way to make a file read-only")
    try:
        yield f"sqlite:///{db}"
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=True)


@pytest.mark.usefixtures("data_dir")  # the data is checked before the stores
def test_a_read_only_tracking_store_leaves_no_study(read_only_tracking, tiny, tmp_path):
    storage = tmp_path / "optuna.db"
    proc = run_cli("study", "run", str(tiny), "--storage", f"sqlite:///{storage}",
                   "--tracking-uri", read_only_tracking, cwd=tmp_path)
    assert_one_line_error(proc, "cannot write to the MLflow tracking store", "attempt to write a readonly database")
    assert optuna.get_all_study_names(f"sqlite:///{storage}") == [], "no empty Optuna study left behind"
