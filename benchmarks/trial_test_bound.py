"""Benchmark: how high could a study's pick score on test at each seed? Reads every complete
trial run of the CNN studies in a store and, per seed (the split and training seed), counts
the distinct trainings and those at or above a test accuracy, with the best test figure and
how well validation ranks them. Test figures are read after the studies, never to choose.

    python benchmarks/trial_test_bound.py --tracking-uri sqlite:///mlflow.db [--threshold 0.995]
"""

from __future__ import annotations

import argparse
import statistics

from mlflow.tracking import MlflowClient

from signlab.contract import FAMILY_TAG, ROLE_TAG, ROLE_TRIAL, TEST_ACCURACY, VAL_ACCURACY

BOOKKEEPING = {"trial_number", "worker", "epochs", "max_epochs"}  # params that differ between runs of one training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--threshold", type=float, default=0.995)
    args = parser.parse_args()

    client = MlflowClient(args.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' "
                              f"and tags.`{FAMILY_TAG}` = 'cnn'", max_results=50_000)
    by_seed: dict[str, dict[tuple, tuple[float, float]]] = {}
    for run in runs:
        metrics = run.data.metrics
        if TEST_ACCURACY not in metrics or VAL_ACCURACY not in metrics:
            continue  # pruned or failed: no test figure
        params = run.data.params
        figures = (metrics[VAL_ACCURACY], metrics[TEST_ACCURACY])
        # one training: the same network and figures (a study run again repeats its trials;
        # the same network at another thread count or code is another training)
        key = (*sorted((k, v) for k, v in params.items() if k not in BOOKKEEPING), *(round(f, 6) for f in figures))
        by_seed.setdefault(params.get("seed", "?"), {})[key] = figures
    for seed, trainings in sorted(by_seed.items(), key=lambda item: int(item[0]) if item[0].isdigit() else -1):
        val, test = zip(*trainings.values(), strict=True)
        above = sum(t >= args.threshold for t in test)
        corr = statistics.correlation(val, test) if len(test) > 2 and len(set(val)) > 1 else float("nan")
        print(f"seed {seed}: {len(test)} distinct complete trainings, {above} at or above "
              f"{args.threshold:.1%} on test, best {max(test):.2%}; validation-test correlation {corr:.2f}")


if __name__ == "__main__":
    main()
