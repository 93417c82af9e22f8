"""Run lifecycle: runs that always end with a status (FINISHED, FAILED, or KILLED on Ctrl-C and
SIGTERM), system metrics, and files logged to the run `mlflow run` started."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from signlab.contract import REPAIRED_TAG, ROLE_TAG, ROLE_TRIAL, WORKER_TAG
from signlab.runs.store import mark_classic_ml, setup
from signlab.signals import hold_interrupts, release_interrupts


def log_system_metrics(enabled: bool) -> None:
    """Record CPU, memory and (where present) GPU use on every run this process starts,
    with MLflow's system-metrics logging (psutil; pynvml for GPUs). MLflow samples every
    10 s ($MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL): its cost is in docs/benchmarks.md."""
    if enabled:
        mlflow.enable_system_metrics_logging()
    else:
        mlflow.disable_system_metrics_logging()


def this_process() -> str:
    """host:pid, as the tag `signlab.worker` records it on the runs this process starts."""
    return f"{socket.gethostname()}:{os.getpid()}"


def end_orphaned_runs(experiment_id: str) -> list[str]:
    """End KILLED the runs of an experiment that a process of this host started and left
    RUNNING when it died (SIGKILL, a closed session): their `signlab.worker` process no longer
    exists. Trial runs are left to the study's own repair (Optuna's heartbeats decide those).
    Says which on stderr; returns their ids."""
    host = socket.gethostname()
    client = MlflowClient()
    running = client.search_runs([experiment_id], max_results=1000, filter_string=(
        f"attributes.status = 'RUNNING' and tags.`{WORKER_TAG}` LIKE '{host}:%'"))
    ended = []
    for run in running:
        if run.data.tags.get(ROLE_TAG) == ROLE_TRIAL or not gone(run.data.tags[WORKER_TAG]):
            continue
        pid = run.data.tags[WORKER_TAG].rpartition(":")[2]
        client.set_tag(run.info.run_id, REPAIRED_TAG,
                       f"left RUNNING by process {pid}, which was gone; ended KILLED by {this_process()}")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        print(f"run {run.info.run_name} ({run.info.run_id}) was left RUNNING by process {pid}, "
              "which is gone: ended KILLED", file=sys.stderr, flush=True)
        ended.append(run.info.run_id)
    return ended


def gone(worker: str) -> bool:
    """Whether `worker` (`host:pid`, as `this_process` writes it) names a process of this host
    that no longer exists; a process of another host is never known to be gone."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


@contextmanager
def tracked_run(killed_on: tuple[type[BaseException], ...] = (), **start_run_kwargs: Any) -> Iterator[mlflow.ActiveRun]:
    """`mlflow.start_run` that ends FINISHED, FAILED on an exception, KILLED on Ctrl-C/SIGTERM
    (and on the exception types in `killed_on`, e.g. optuna.TrialPruned).

    Ctrl-C and SIGTERM are held back while the run is created: one landing inside
    `start_run`, after the store made the run but before it was returned, would leave a run
    RUNNING that nothing can end. They are delivered as soon as the run can be ended KILLED."""
    hold_interrupts()
    try:
        run = mlflow.start_run(**start_run_kwargs)
    except BaseException:
        release_interrupts()
        raise
    try:
        release_interrupts()  # a signal that came meanwhile is raised here, inside the try
        mark_classic_ml(mlflow.get_tracking_uri(), run.info.experiment_id)
        yield run
    except KeyboardInterrupt as exc:  # the CLI's one line says which runs were ended how
        ended = _end(RunStatus.to_string(RunStatus.KILLED), quiet=True)
        exc.add_note(f"MLflow run {run.info.run_name} ({run.info.run_id}) "
                     + ("ended KILLED" if ended else "could not be ended: it stays RUNNING"))
        raise
    except killed_on:
        _end(RunStatus.to_string(RunStatus.KILLED), quiet=True)
        raise
    except BaseException:
        _end(RunStatus.to_string(RunStatus.FAILED), quiet=True)
        raise
    else:
        hold_interrupts()  # a run half-ended would stay RUNNING: the signal waits
        try:
            _end(RunStatus.to_string(RunStatus.FINISHED))
        finally:
            release_interrupts()


def _end(status: str, quiet: bool = False) -> bool:
    """End the active run; `quiet`: a failure to do so (the tracking server going down
    with us, say) is a warning, so it cannot replace the exception being handled. Whether
    the run was ended."""
    try:
        try:
            mlflow.flush_async_logging()
        finally:
            mlflow.end_run(status)
    except Exception as exc:
        if not quiet:
            raise
        warnings.warn(f"could not end the MLflow run as {status}: {exc}", stacklevel=3)
        return False
    return True


def log_to_active_run(paths: list[Path], artifact_path: str | None = None, launched: str | None = None) -> str | None:
    """Log files to the active run, or to `launched` (the run `mlflow run` started); its id, or None."""
    run = mlflow.active_run()
    if run is None and not launched:
        return None
    if run is None:
        setup()
    with tracked_run(run_id=launched) if run is None else nullcontext(run) as active:
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
        return active.info.run_id
