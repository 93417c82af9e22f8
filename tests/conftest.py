"""Shared fixtures: the real data set (from $SIGNLAB_DATA_DIR or ../shared) and temp stores.

The data is optional at collection: tests that need it ask for `data_dir` (or a split),
which fails them, saying where to put it, when it is missing; the rest run without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from signlab.config import thread_environment

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# one trial at a time unless a test asks for more (tests/test_parallel.py): the suite already runs
# in two processes on two cores; children inherit it, `mlflow run` studies included
os.environ["SIGNLAB_PARALLEL"] = "1"
# Each test process (pytest-xdist's `-n 2`) sizes its libraries' thread pools as a study's local
# workers do (`config.thread_environment`): BLAS's on a share of the cores, since two processes
# with a pool per core each fought over them (OpenBLAS spins on sched_yield while it waits).
# Children inherit it; a launcher of parallel trials sizes its own workers again (tests/test_parallel.py).
TEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if TEST_PROCESSES > 1:
    os.environ.update(thread_environment(TEST_PROCESSES))
NO_DATA = ("the real data set is needed: set SIGNLAB_DATA_DIR to a folder with the Kaggle CSVs "
           "(CI uses ../shared/data/sign_mnist)")


def _real_data_dir() -> Path | None:
    for candidate in (os.environ.get("SIGNLAB_DATA_DIR"), ROOT.parent / "shared/data/sign_mnist"):
        if candidate and any(Path(candidate).glob("sign_mnist_train.csv*")):
            return Path(candidate).resolve()
    return None


DATA_DIR = _real_data_dir()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Parsed copies go to a per-session folder, never the user's cache; child processes
    find the data through $SIGNLAB_DATA_DIR where there is data."""
    os.environ["SIGNLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    if DATA_DIR is not None:
        os.environ["SIGNLAB_DATA_DIR"] = str(DATA_DIR)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data set's folder; fails the test that asks, with how to get it, where there is none."""
    if DATA_DIR is None:
        pytest.fail(NO_DATA, pytrace=False)
    return DATA_DIR


@pytest.fixture(scope="session")
def data_files(data_dir):
    """Both real files, loaded once per test process (trainings and studies take them as data)."""
    from signlab.data.dataset import load_files

    return load_files(data_dir)


@pytest.fixture(scope="session")
def train_split(data_dir):
    from signlab.data.dataset import load_split

    return load_split("train", data_dir)


@pytest.fixture(scope="session")
def test_split(data_dir):
    from signlab.data.dataset import load_split

    return load_split("test", data_dir)


# The files whose tests take longest, first (`pytest --durations=0`, 2026-12-05: seconds of test
# time on a loaded machine, 132 s down to 8). With `--dist loadfile` a file runs whole on one
# worker, and a worker takes the next file from this order as it runs out (pyproject's
# `--no-loadscope-reorder`: xdist would otherwise order files by their number of tests); started
# last, a long file leaves the other core idle for its last minutes. The rest keep their order.
LONGEST_FIRST = ("test_distributed.py", "test_console.py", "test_mlflow_ui.py", "test_credentials.py",
                 "test_registry_serving.py", "test_hostile_input.py", "test_sessions.py", "test_report.py",
                 "test_refit.py", "test_mlflow_uv.py", "test_training_runs.py", "test_server_auth.py",
                 "test_dashboard.py", "test_references.py", "test_bad_input.py", "test_studies.py",
                 "test_in_process.py", "test_parallel.py", "test_validation.py", "test_model_safety.py",
                 "test_structure.py", "test_progress.py", "test_cli_profile.py", "test_max_params.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (`LONGEST_FIRST`); a stable sort keeps each file's own order."""
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
