"""What `confirm:` would have changed in a finished study: run signlab's own confirm step
(`run_confirmations`, `confirmed_choice`) on a stored study, in copies of its two SQLite stores
(the study and its runs stay as they are), then print the choice with and without it and each
candidate's test figures for the record. Chooses on validation only, as a study does.

    python benchmarks/confirm_after.py cnn_study_s11q --storage /work/studyruns/optuna.db \
        --tracking /work/studyruns/mlflow.db --out /work/runs/confirm --top-k 3 --seeds 2
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import mlflow
import optuna
from mlflow.tracking import MlflowClient

from signlab.contract import PARENT_ATTR, ROLE_CONFIRM, ROLE_TAG, RUN_ATTR, TEST_ACCURACY
from signlab.data.dataset import load_files
from signlab.runs import lifecycle, store
from signlab.runs.job import prepare_data
from signlab.search.confirm import confirm_lines, confirmed_choice, run_confirmations
from signlab.search.outputs import ranked_trials
from signlab.search.setup import Overrides, resolved_config, with_stored_data
from signlab.search.study_config import ConfirmConfig


def copy_store(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file, even while another process writes it."""
    if target.exists():  # a copy made by an earlier, interrupted call: its confirm runs resume
        return
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    src.backup(dst)
    dst.close()
    src.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_name")
    parser.add_argument("--study-file", default="studies/cnn.yaml")
    parser.add_argument("--storage", type=Path, required=True, help="the study's Optuna SQLite file")
    parser.add_argument("--tracking", type=Path, required=True, help="its MLflow SQLite file")
    parser.add_argument("--out", type=Path, required=True, help="where the copies go (a folder per study)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    out = args.out / args.study_name
    out.mkdir(parents=True, exist_ok=True)
    copy_store(args.storage, out / "optuna.db")
    copy_store(args.tracking, out / "mlflow.db")
    cfg = resolved_config(args.study_file, Overrides(study_name=args.study_name))
    cfg = cfg.model_copy(update={"confirm": ConfirmConfig(top_k=args.top_k, seeds=args.seeds)})
    study = optuna.load_study(study_name=args.study_name, storage=f"sqlite:///{out / 'optuna.db'}")
    cfg = with_stored_data(cfg, study)
    data = prepare_data(load_files(), cfg.data_settings)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    store.setup(uri)
    parent = study.user_attrs[PARENT_ATTR]
    experiment = mlflow.get_run(parent).info.experiment_id
    mlflow.set_experiment(experiment_id=experiment)
    ranked = ranked_trials(study)
    with lifecycle.tracked_run(run_id=parent):
        run_confirmations(study, cfg, data, ranked)

    client = MlflowClient(uri)
    print("\n".join(confirm_lines(study, cfg, ranked)))
    for trial in ranked[:args.top_k]:
        m = client.get_run(trial.user_attrs[RUN_ATTR]).data.metrics
        print(f"trial {trial.number}: search val {trial.value:.4f}, its run's test {m[TEST_ACCURACY]:.4f} "
              f"({m['test_accuracy_ci_low']:.4f}-{m['test_accuracy_ci_high']:.4f})")
    runs = client.search_runs([experiment], f"tags.`{ROLE_TAG}` = '{ROLE_CONFIRM}' "
                                            f"and tags.`mlflow.parentRunId` = '{parent}'")
    for run in runs:
        print(f"confirm run: trial {run.data.tags['trial_number']}, seed {run.data.tags['confirm_seed']}, "
              f"test {run.data.metrics[TEST_ACCURACY]:.4f}")
    choice = confirmed_choice(study, cfg, ranked)
    print(f"the ranking's first: trial {ranked[0].number}; confirmed: trial {choice.number if choice else None}")


if __name__ == "__main__":
    main()
