"""How the grouping threshold changes the grouped split, measured on the training file alone
(the test split's figures are printed for the record, never to choose).

    python benchmarks/validation_split.py            # figures in docs/results.md
"""

from __future__ import annotations

import time

import numpy as np

from signlab.data.dataset import load_split
from signlab.data.groups import leakage, variant_groups
from signlab.data.splits import split_indices

THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def main() -> None:
    train, test = load_split("train"), load_split("test")
    print("| threshold | groups | median size | largest | singletons | seconds "
          "| val vs train: median NN sim, 1-NN | test vs train (record only) |")
    print("|---|---|---|---|---|---|---|---|")
    for threshold in THRESHOLDS:
        start = time.perf_counter()
        groups = variant_groups(train.images, train.labels, threshold)
        seconds = time.perf_counter() - start
        sizes = np.bincount(groups)
        tr, val = split_indices(train.labels, groups, 0.2, seed=0)
        v = leakage(train.images[tr], train.labels[tr], train.images[val], train.labels[val])
        t = leakage(train.images[tr], train.labels[tr], test.images, test.labels)
        print(f"| {threshold} | {len(sizes)} | {np.median(sizes):.0f} | {sizes.max()} | {(sizes == 1).sum()} | "
              f"{seconds:.1f} | {v.nn_similarity:.3f}, {v.nn_accuracy:.1%} | {t.nn_similarity:.3f}, {t.nn_accuracy:.1%} |")
    tr, val = split_indices(train.labels, None, 0.2, seed=0)
    v = leakage(train.images[tr], train.labels[tr], train.images[val], train.labels[val])
    t = leakage(train.images[tr], train.labels[tr], test.images, test.labels)
    print(f"| random split | - | - | - | - | - | {v.nn_similarity:.3f}, {v.nn_accuracy:.1%} "
          f"| {t.nn_similarity:.3f}, {t.nn_accuracy:.1%} |")


if __name__ == "__main__":
    main()
