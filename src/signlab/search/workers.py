"""`signlab study workers N`: N local worker processes on one study.

The study, its parent run and the trial cap are settled here, once, before any worker
starts; each worker is a plain `signlab study run ... --max-total-trials CAP`, exactly what
a user starts by hand on other machines. URLs reach the workers through the environment
($SIGNLAB_STORAGE, $MLFLOW_TRACKING_URI), never the command line (where `ps` shows it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signlab.config import LAUNCHED_WORKER_ENV, auto_processes, child_environment, thread_environment
from signlab.data.dataset import load_split
from signlab.errors import UserError
from signlab.search.parent import Session, start_session
from signlab.search.setup import Overrides, resolved_config

if TYPE_CHECKING:
    import optuna

    from signlab.search.refit import RefitLauncher
    from signlab.search.study_config import StudyConfig


def prepare(config: str | Path, overrides: Overrides, storage_url: str, tracking_uri: str | None,
            data_dir: str | None, launched: str | None = None) -> tuple[Session, int, int]:
    """Check the data, then create or resume the study and its parent run (`launched`: the run
    `mlflow run` started, which becomes the parent or this session's run); (the session, trials
    already there, the cap)."""
    cfg = resolved_config(config, overrides)
    for split in ("train", "test"):
        load_split(split, data_dir)  # a missing or bad file stops us before anything is created
    started = start_session(cfg, storage_url, tracking_uri, launched)
    existing = len(started.study.trials)
    cap = existing + cfg.n_trials
    if overrides.max_total_trials is not None:
        cap = min(cap, overrides.max_total_trials) if overrides.n_trials is not None else overrides.max_total_trials
    return started, existing, cap


def worker_command(config: str | Path, cap: int, options: dict[str, Any]) -> list[str]:
    """The `signlab study run` command line of one worker."""
    args = [sys.executable, "-m", "signlab", "study", "run", str(config), "--max-total-trials", str(cap),
            "--no-progress"]
    for key, value in options.items():
        if value is True:  # a flag (--new-parent)
            args.append(f"--{key.replace('_', '-')}")
        elif value is not None and value is not False:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def run_workers(n: int, config: str | Path, overrides: Overrides, storage_url: str, tracking_uri: str | None,
                data_dir: str | None, echo: Callable[[str], None] = print, system_metrics: bool = True,
                launched: str | None = None) -> int:
    """Start `n` workers on one study and wait for all. Ctrl-C or SIGTERM is passed on to
    every worker, whose running trials then end FAIL and their runs KILLED. Each worker's
    thread pools are sized by `config.thread_environment` (TensorFlow's on every core, BLAS's
    on a share).

    Args:
        n: worker processes (each `signlab study run --parallel 1`).
        config: the study file.
        overrides: command-line values that replace the file's; the workers together add
            its `n_trials`.
        storage_url: Optuna's storage, shared by the workers.
        tracking_uri: MLflow's, shared too.
        data_dir: where each worker reads the data set.
        echo: where the launcher's lines go (the workers' own go to their output).
        system_metrics: record CPU and memory on each run.
        launched: the run `mlflow run` started this session in, if any.

    Returns:
        The worst exit code of the workers (0 when all succeeded).
    """
    started, existing, cap = prepare(config, overrides, storage_url, tracking_uri, data_dir, launched)
    uri = started.tracking_uri
    if existing >= cap:
        echo(f"the study already has {existing} trials (cap {cap}): nothing to do")
        return 0
    echo(f"{n} workers on the study ({existing} trials so far, stopping at {cap} in all)")
    # the launcher's overrides, but the trial budget: each worker may run all that is left
    options = {**vars(overrides), "n_trials": cap - existing, "max_total_trials": None, "data_dir": data_dir,
               "parallel": 1, "new_parent": None}  # the parent is settled above, once
    env = child_environment(SIGNLAB_STORAGE=storage_url, MLFLOW_TRACKING_URI=uri, **{LAUNCHED_WORKER_ENV: "1"},
                            **thread_environment(n))
    command = worker_command(config, cap, options) + ([] if system_metrics else ["--no-system-metrics"])
    codes = run_children([[*command, "--worker", str(i + 1)] for i in range(n)], env)
    for i, code in enumerate(codes, start=1):
        if code:
            echo(f"worker {i} exited with code {code}")
    if not max(codes):
        from mlflow.tracking import MlflowClient

        from signlab.contract import TRIALS_ADDED_METRIC
        from signlab.data.dataset import load_files
        from signlab.search.outputs import summary_lines
        from signlab.search.study import finish_launched_study

        cfg = resolved_config(config, overrides)
        launch = refit_launcher(config, cfg, storage_url, uri, data_dir, system_metrics)
        finish_launched_study(started, cfg, load_files(data_dir or None), echo=echo, launch=launch)
        study = started.study  # read again from the storage: the workers' trials, refit and choice
        if started.session:  # a resumed study: what this session added, as one worker's session logs it
            MlflowClient().log_metric(started.session, TRIALS_ADDED_METRIC, len(study.trials) - existing)
        for line in summary_lines(study, cfg, uri, started.experiment_id,
                                  started.parent, len(study.trials) - existing):
            echo(line)
    return max(codes)


def run_children(commands: list[list[str]], env: dict[str, str]) -> list[int]:
    """Start one process per command and wait for all; their exit codes (killed by signal k:
    128 + k). Ctrl-C or SIGTERM here is passed on to each, once."""
    # Own sessions: a terminal's Ctrl-C reaches only this process, which passes it on once
    # (a second interrupt could land in a child's clean-up and leave its run RUNNING).
    procs = [subprocess.Popen(command, env=env, start_new_session=True) for command in commands]

    def forward(signum: int, frame: Any) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return [128 - code if code < 0 else code for code in codes]


def refit_launcher(config: str | Path, cfg: StudyConfig, storage_url: str, tracking_uri: str,
                   data_dir: str | None, system_metrics: bool = True, at_most: int | None = None) -> RefitLauncher:
    """How a launcher refits several seeds at once: one `signlab study refit --only-seed S`
    process per seed, their thread pools sized by `config.thread_environment`; all seeds at
    once as memory holds them (they share the cores, and the last one left takes them all),
    or at most `at_most`."""

    def launch(trial: optuna.trial.FrozenTrial, seeds: list[int]) -> None:
        at_once = auto_processes(min(len(seeds), at_most or len(seeds)))
        base = [sys.executable, "-m", "signlab", "study", "refit", str(config), "--study-name", cfg.study_name,
                "--trial", str(trial.number), "--max-epochs", str(cfg.max_epochs), "--seeds", str(cfg.refit.seeds)]
        base += [] if system_metrics else ["--no-system-metrics"]
        if data_dir:
            base += ["--data-dir", str(data_dir)]
        codes: dict[int, int] = {}
        for start in range(0, len(seeds), at_once):
            batch = seeds[start:start + at_once]
            env = child_environment(SIGNLAB_STORAGE=storage_url, MLFLOW_TRACKING_URI=tracking_uri,
                                    **thread_environment(len(batch)))
            codes.update(zip(batch, run_children([[*base, "--only-seed", str(seed)] for seed in batch], env),
                             strict=True))
            interrupted = [seed for seed, code in codes.items() if code - 128 in (signal.SIGINT, signal.SIGTERM)]
            if interrupted:
                stop = KeyboardInterrupt()
                stop.add_note(f"the refits of seeds {', '.join(map(str, interrupted))} stopped")
                raise stop
        failed = [f"seed {seed} (exit code {code})" for seed, code in codes.items() if code]
        if failed:
            raise UserError(f"refit of trial {trial.number} failed for {', '.join(failed)}; "
                            "`signlab study refit` with the same file and stores trains what is missing")

    return launch
