"""Shared fixtures: the real data set (from $SIGNLAB_DATA_DIR or ../shared) and temp stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _real_data_dir() -> Path:
    for candidate in (os.environ.get("SIGNLAB_DATA_DIR"), ROOT.parent / "shared/data/sign_mnist"):
        if candidate and any(Path(candidate).glob("sign_mnist_train.csv*")):
            return Path(candidate).resolve()
    pytest.exit(
        "the real data set is needed: set SIGNLAB_DATA_DIR to a folder with the Kaggle CSVs "
        "(CI uses ../shared/data/sign_mnist)",
        returncode=2,
    )


DATA_DIR = _real_data_dir()


def _browser() -> str | None:
    from signlab.plots import find_browser

    return find_browser()


# PNG copies of charts are written only where kaleido finds a Chrome/Chromium.
BROWSER = _browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chrome/Chromium: PNG output is off (apt install chromium)")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Parsed copies go to a per-session folder, never the user's cache."""
    os.environ["SIGNLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["SIGNLAB_DATA_DIR"] = str(DATA_DIR)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def train_split():
    from signlab.data.dataset import load_split

    return load_split("train", DATA_DIR)


@pytest.fixture(scope="session")
def test_split():
    from signlab.data.dataset import load_split

    return load_split("test", DATA_DIR)


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ for a child process, without this process's MLflow run/experiment state,
    with the venv's bin first on PATH (so `mlflow run` finds our python)."""
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in {"MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def runs_by_role(client, experiment: str) -> dict[str, list]:  # noqa: ANN001 (MlflowClient)
    """An experiment's runs grouped by their `signlab.role` tag (study, trial, session...)."""
    exp = client.get_experiment_by_name(experiment)
    roles: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        roles.setdefault(run.data.tags.get("signlab.role", "other"), []).append(run)
    return roles


def run_cli(*args: str, timeout: float = 300, **popen):  # noqa: ANN003, ANN201 (subprocess.CompletedProcess)
    """`python -m signlab ARGS` in a child process; `.stdout` holds stdout and stderr together."""
    import subprocess
    import sys

    popen.setdefault("env", subprocess_env())
    return subprocess.run([sys.executable, "-m", "signlab", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, **popen)


def assert_one_line_error(proc, *words: str) -> str:  # noqa: ANN001 (subprocess.CompletedProcess)
    """Exit code 2 and a single `error: ...` line holding `words`, no traceback; the line."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stdout and len(lines) == 1, proc.stdout
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc, seconds: float, log: Path | None = None) -> None:  # noqa: ANN001 (subprocess.Popen)
    """Poll `url` until it answers HTTP 200; fail if `proc` exits first or after `seconds`."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, f"server exited with {proc.returncode}: " + (log.read_text()[-3000:] if log else "")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {seconds:.0f} s"
        time.sleep(0.5)
