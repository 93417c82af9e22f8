"""Child processes: `signlab` commands, `mlflow server`, and waiting for them, every wait bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signlab.config import child_environment


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ for a child process, without this process's MLflow run/experiment state,
    with the venv's bin first on PATH (so `mlflow run` finds our python)."""
    env = child_environment(**extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


WITHOUT_BROWSER = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "without-browser.sh"


def without_browser(args: list[str]) -> list[str]:
    """`args` as on a machine with no Chrome/Chromium (`../shared/tools/without-browser.sh`
    hides them from one command), or as they are where that script is missing."""
    return ["bash", str(WITHOUT_BROWSER), *args] if WITHOUT_BROWSER.is_file() else args


def run_cli(*args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess[str]:  # noqa: ANN003
    """`python -m signlab ARGS` in a child process; `.stdout` holds stdout and stderr together."""
    popen.setdefault("env", subprocess_env())
    return subprocess.run([sys.executable, "-m", "signlab", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, **popen)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code 2 and a single `error: ...` line holding `words`, no traceback; the line."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stdout and len(lines) == 1, proc.stdout
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float, log: Path | None = None) -> None:
    """Poll `url` until it answers HTTP 200; fail if `proc` exits first or after `seconds`."""
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


@contextmanager
def mlflow_server(folder: Path, seconds: float = 120) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with a SQLite store (`folder`/mlflow.db) and its artifacts
    and log in `folder`; yields its URL and stops it on the way out."""
    from helpers.stores import mlflow_store

    mlflow_store(folder)  # the server's store, made once per test process and copied
    port = free_port()
    log = folder / "mlflow-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts")], stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=folder)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health", proc, seconds, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
