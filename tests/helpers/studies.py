"""A study file small enough to run in seconds, and waiting for its workers' trials."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml


def tiny_study(folder: Path, name: str = "tiny", *, max_epochs: int = 1, subset: int = 6, high: int = 64,
               **settings: Any) -> Path:
    """`folder/<name>.yaml`: an MLP study of `name` searching one layer's units (16 to `high`)
    with a seeded TPE sampler and no pruner; `settings` add or replace top-level keys."""
    study = {"study_name": name, "family": "mlp", "max_epochs": max_epochs, "subset": subset,
             "sampler": {"type": "tpe", "seed": 1}, "pruner": {"type": "none"},
             "space": {"units": {"type": "int", "low": 16, "high": high}}} | settings
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def wait_for_running_trials(storage: str, name: str, proc: subprocess.Popen, n: int = 1,
                            timeout: float = 300) -> list[Any]:
    """Until at least `n` trials of study `name` are RUNNING with their MLflow runs (workers
    mid-trial), `proc` still alive; returns those trials (Optuna's FrozenTrial). Fails the test
    past `timeout` seconds, or with `proc`'s last output if it ended."""
    import optuna

    deadline = time.monotonic() + timeout
    study = None  # loaded once it exists (a load opens the storage anew: 60 ms of CPU, a poll 1 ms)
    while True:
        if proc.poll() is not None:
            output = proc.stdout.read()[-3000:] if proc.stdout else ""
            raise AssertionError(f"the workers ended (code {proc.returncode}) before {n} trials ran: {output}")
        assert time.monotonic() < deadline, f"fewer than {n} trials running after {timeout} s"
        try:
            study = study or optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            pass
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if study else []
        with_runs = [t for t in running if "mlflow_run_id" in t.user_attrs]
        if len(with_runs) >= n:
            return with_runs
        time.sleep(0.2)
