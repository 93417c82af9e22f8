"""Where fANOVA's ranking of hyperparameters settles: the importances from a study's first n
complete trials against those from all of them (Spearman of the rankings, and whether the top
one and the top three agree). Reads the study; chooses nothing.

    signlab study run benchmarks/importance_study.yaml --storage sqlite:///imp.db --tracking-uri sqlite:///imp-mlflow.db
    python benchmarks/importance_settling.py importance --storage sqlite:///imp.db
"""

from __future__ import annotations

import argparse

import optuna
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from scipy.stats import spearmanr


def importances(trials: list[optuna.trial.FrozenTrial], seed: int) -> dict[str, float]:
    """fANOVA importances (signlab's evaluator settings) over these trials only."""
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--storage", default="sqlite:///optuna.db")
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3, help="fANOVA forest seeds averaged per n")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: t.number)
    # Only the parameters every trial has (n_blocks changes which filters_k exist).
    keys = sorted(set.intersection(*(set(t.params) for t in done)))
    done = [optuna.trial.create_trial(params={k: t.params[k] for k in keys},
                                      distributions={k: t.distributions[k] for k in keys},
                                      value=t.value) for t in done]

    def mean_importances(trials: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
        runs = [importances(trials, s) for s in range(args.seeds)]
        return {k: sum(r[k] for r in runs) / len(runs) for k in keys}

    final = mean_importances(done)
    final_order = sorted(keys, key=lambda k: -final[k])
    print(f"{len(done)} complete trials; ranking from all of them: "
          + ", ".join(f"{k} {final[k]:.2f}" for k in final_order))
    print("| first n trials | Spearman vs all | top 1 same | top 3 same (as a set) | top 3 |")
    print("|---|---|---|---|---|")
    for n in range(args.step, len(done) + 1, args.step):
        imp = mean_importances(done[:n])
        order = sorted(keys, key=lambda k: -imp[k])
        rho = spearmanr([imp[k] for k in keys], [final[k] for k in keys]).statistic
        print(f"| {n} | {rho:.2f} | {order[0] == final_order[0]} | "
              f"{set(order[:3]) == set(final_order[:3])} | {', '.join(order[:3])} |")


if __name__ == "__main__":
    main()
