"""The reference rows of docs/results.md from a store: each row's FINISHED `signlab reference`
runs, test accuracy as mean ± std over seeds with min-max, against the published figure.
Reads the store; chooses nothing.

    python benchmarks/references_table.py --tracking-uri sqlite:///mlflow.db [--experiment references]
"""

from __future__ import annotations

import argparse
import statistics

from mlflow.tracking import MlflowClient

from signlab.contract import N_PARAMS, REFERENCE_ROW_TAG, SEED_TAG, TEST_ACCURACY, TEST_F1, VAL_ACCURACY
from signlab.runs.references import Reference, load_references


def pct(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:.2f}%" + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else "")


def published(ref: Reference) -> str:
    """The paper's accuracy, with its F1 where it gives one."""
    return f"{100 * ref.accuracy:.2f}%" + (f" (F1 {ref.f1:.4f})" if ref.f1 is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="references")
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", max_results=5000)
    print("| row | published (F1) | ours: test, mean ± std | min-max | seeds | val, mean | ours: macro F1 | params "
          "| train s, mean | diff (pts) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ref in load_references():
        if not ref.reproduce:
            continue
        mine = [r for r in runs if r.data.tags.get(REFERENCE_ROW_TAG) == ref.reproduce]
        if not mine:
            print(f"| {ref.model} | {published(ref)} | (not run) | | | | | | | |")
            continue
        test = [r.data.metrics[TEST_ACCURACY] for r in mine]
        seeds = ",".join(sorted(r.data.tags.get(SEED_TAG, "?") for r in mine))
        print(f"| {ref.model} | {published(ref)} | {pct(test)} | {100 * min(test):.2f}-{100 * max(test):.2f}% "
              f"| {seeds} | {pct([r.data.metrics[VAL_ACCURACY] for r in mine]).split(' ')[0]} "
              f"| {statistics.mean(r.data.metrics[TEST_F1] for r in mine):.4f} "
              f"| {int(mine[0].data.metrics[N_PARAMS]):,} "
              f"| {statistics.mean(r.data.metrics['train_seconds'] for r in mine):.0f} "
              f"| {100 * (statistics.mean(test) - ref.accuracy):+.2f} |")


if __name__ == "__main__":
    main()
