"""Hyperband against median pruning in the same wall time: a study file as shipped and a copy
with another pruner run side by side (each gets the same share of the machine) for the same
`--timeout`, then what each had found after every 10 minutes. Chooses on validation only; the
test accuracy of each pick is reported.

    python benchmarks/pruners.py run studies/cnn.yaml --pruner '{type: median, n_startup_trials: 4, n_warmup_steps: 6}' \\
        --subset 300 --timeout 2400 --folder /tmp/pruners
    python benchmarks/pruners.py compare --folder /tmp/pruners
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

NAMES = ("shipped", "other")


def run(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    shipped = yaml.safe_load(Path(args.study_file).read_text())
    other = {**shipped, "pruner": yaml.safe_load(args.pruner)}
    procs = []
    for name, cfg in zip(NAMES, (shipped, other), strict=True):
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**cfg, "study_name": f"{cfg['study_name']}_{name}"}, sort_keys=False))
        command = [sys.executable, "-m", "signlab", "study", "run", str(path), "--subset", str(args.subset),
                   "--timeout", str(args.timeout), "--refit-seeds", "0", "--no-progress",
                   "--storage", f"sqlite:///{folder / name}-optuna.db",
                   "--tracking-uri", f"sqlite:///{folder / name}-mlflow.db"]
        log = open(folder / f"{name}.log", "w")  # noqa: SIM115 (closed when the child exits)
        procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()))
    # bounded: each study starts no trial after --timeout; its last trial ends within max_epochs
    for proc in procs:
        proc.wait(timeout=args.timeout * 3 + 600)
    compare(args)


def compare(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    print("| pruner | trials | complete | pruned | epochs trained | best validation after 10 / 20 / 30 / 40 min "
          "| pick: validation | pick: test (reported only) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for name in NAMES:
        path = folder / f"{name}.yaml"
        cfg = yaml.safe_load(path.read_text())
        study = optuna.load_study(study_name=cfg["study_name"], storage=f"sqlite:///{folder / name}-optuna.db")
        trials = [t for t in study.trials if t.datetime_complete is not None]
        start = min(t.datetime_start for t in trials)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
        epochs = sum(len(t.intermediate_values) for t in trials)
        checkpoints = []
        for minutes in (10, 20, 30, 40):
            done = [t for t in complete if (t.datetime_complete - start).total_seconds() <= minutes * 60]
            checkpoints.append(f"{max(t.value for t in done):.2%}" if done else "-")
        pick = max(complete, key=lambda t: t.value)
        pruner = cfg["pruner"]["type"]
        print(f"| {pruner} | {len(trials)} | {len(complete)} | {len(pruned)} | {epochs} | {' / '.join(checkpoints)} "
              f"| {pick.value:.2%} (trial {pick.number}) | {pick.user_attrs.get('test_accuracy', float('nan')):.2%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("run")
    start.add_argument("study_file")
    start.add_argument("--pruner", required=True, help="the other pruner, as YAML")
    start.add_argument("--subset", type=int, default=0)
    start.add_argument("--timeout", type=int, default=2400)
    start.add_argument("--folder", required=True)
    show = sub.add_parser("compare")
    show.add_argument("--folder", required=True)
    args = parser.parse_args()
    run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    main()
