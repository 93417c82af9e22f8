"""How well a study's validation accuracy ranks its complete trials on the test split
(Spearman), its chosen trial and that trial's refits. Reads the stores; chooses nothing.

    python benchmarks/study_ranking.py cnn_study --storage sqlite:///optuna.db --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse

import mlflow
import optuna
from scipy.stats import spearmanr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--storage", default="sqlite:///optuna.db")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    done = [t for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and "same_params_as" not in t.user_attrs]
    val = [t.user_attrs["final_val_accuracy"] for t in done]
    test = [t.user_attrs["test_accuracy"] for t in done]
    rho = spearmanr(val, test)
    print(f"{len(study.trials)} trials, {len(done)} complete; Spearman rho {rho.statistic:.3f} (p {rho.pvalue:.3g})")
    print("| trial | validation | test (reported only) | params | best epoch | time |")
    for t in sorted(done, key=lambda t: -t.user_attrs["final_val_accuracy"]):
        a = t.user_attrs
        print(f"| {t.number} | {a['final_val_accuracy']:.2%} | {a['test_accuracy']:.2%} | {int(a['n_params']):,} | "
              f"{a.get('best_epoch')} | {t.duration.total_seconds():.0f} s |")
    client = mlflow.MlflowClient(args.tracking_uri)
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    print("parent", parent.info.run_id, {k: round(v, 5) for k, v in parent.data.metrics.items() if k.startswith("refit")})
    for run_id in filter(None, parent.data.tags.get("refit.run_ids", "").split(",")):
        run = client.get_run(run_id)
        print(f"refit seed {run.data.tags.get('refit_seed')}: test {run.data.metrics['test_accuracy']:.4f}, "
              f"{run.data.metrics['train_seconds']:.0f} s ({run_id})")


if __name__ == "__main__":
    main()
