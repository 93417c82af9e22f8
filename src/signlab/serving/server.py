"""`signlab server`: an MLflow tracking server with a database backend store and proxied
artifacts, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from signlab import config
from signlab.errors import UserError
from signlab.stores import check_database, redact

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(backend_store_uri: str, artifacts_destination: str, host: str, port: int, workers: int,
          allowed_hosts: str | None = None, echo: Callable[[str], None] = print) -> None:
    """Check the backend store answers, then become `mlflow server` (signals reach it
    directly). The backend store URI travels in $MLFLOW_BACKEND_STORE_URI, so its password
    is neither printed nor visible to `ps`."""
    if backend_store_uri.startswith("sqlite:///"):
        Path(backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    backend = check_database(backend_store_uri, "MLflow backend store")
    search_path = os.pathsep.join([str(Path(sys.executable).parent), config.child_environment().get("PATH", "")])
    mlflow_cli = shutil.which("mlflow", path=search_path)
    if mlflow_cli is None:
        raise UserError("the `mlflow` command is not installed beside this Python")
    if host not in LOOPBACK:
        echo(f"warning: listening on {host}: the MLflow server has no authentication; anyone who can "
             "reach this port can read and change every run")
        if allowed_hosts is None:
            echo("note: MLflow answers only requests addressed to localhost or a private IP; workers that "
                 "use a host name need --allowed-hosts 'NAME:PORT'")
    echo(f"MLflow tracking server on http://{host}:{port}: backend store {redact(backend)}, "
         f"artifacts in {artifacts_destination}")
    echo(f"point workers at it: --tracking-uri http://{host}:{port} (or export MLFLOW_TRACKING_URI)")
    sys.stdout.flush()
    env = config.child_environment(MLFLOW_BACKEND_STORE_URI=backend)
    args = [mlflow_cli, "server", "--artifacts-destination", artifacts_destination, "--host", host,
            "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        args += ["--allowed-hosts", allowed_hosts]
    os.execve(mlflow_cli, args, env)
