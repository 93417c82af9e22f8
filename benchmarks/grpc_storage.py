"""Optuna's gRPC storage proxy in front of a study storage, for benchmarks/many_workers.py only.

Measured, it does not raise signlab's ceiling (the MLflow tracking server is the limit) and it
has no heartbeats (a dead worker's trial would stay RUNNING), so signlab does not offer it;
docs/distributed.md has the figures. This module lets the benchmark run the same workers
through it:

    python benchmarks/grpc_storage.py serve PORT       # the proxy, for the URL in $PROXIED_STORAGE
    python benchmarks/grpc_storage.py signlab ARGS...  # `signlab ARGS` where --storage may be
                                                       # grpc://HOST:PORT; the workers it starts too
"""

from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna

from signlab.search import setup, storage, workers

HERE = Path(__file__).resolve()


def proxy_client(url: str, wait: float = 30.0) -> optuna.storages.BaseStorage:
    """A GrpcStorageProxy for grpc://HOST:PORT, once the proxy answers (ConnectionError if not)."""
    parts = urlsplit(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        client = optuna.storages.GrpcStorageProxy(host=parts.hostname, port=parts.port)
    client.wait_server_ready(timeout=wait)
    return client


def serve(port: int, threads: int = 10) -> None:
    """The proxy on 127.0.0.1:PORT for $PROXIED_STORAGE (cached RDBStorage, as Optuna advises)."""
    rdb = storage.open_storage(os.environ["PROXIED_STORAGE"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(rdb), host="127.0.0.1", port=port,
                                              thread_pool=ThreadPoolExecutor(max_workers=threads))


def run_signlab(args: list[str]) -> None:
    """signlab's CLI with grpc:// storages opened through the proxy, and its workers started
    through this module as well."""
    opened = setup.open_storage

    def open_storage(url: str, *rest: Any, **kwargs: Any) -> Any:
        return proxy_client(url) if url.startswith("grpc://") else opened(url, *rest, **kwargs)

    command = workers.worker_command

    def worker_command(*rest: Any, **kwargs: Any) -> list[str]:
        line = command(*rest, **kwargs)
        return [sys.executable, str(HERE), "signlab", *line[3:]]  # [python, -m, signlab, ...]

    setup.open_storage = open_storage
    workers.worker_command = worker_command
    from signlab.cli import app

    app(args, prog_name="signlab")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        run_signlab(sys.argv[2:])
