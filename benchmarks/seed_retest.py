"""How far a study's ranking of its complete trials can be trusted: retrain each complete
trial's configuration with another seed (same split, same epochs, the same best-epoch rule)
and compare the rankings. Spearman(test, test with another seed) is what any validation
figure could reach at most: no split ranks models better than their own test accuracy
ranks them again. Reads the study and the test split; chooses nothing.

    python benchmarks/seed_retest.py studies/cnn.yaml --storage sqlite:///optuna.db --json retest.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
from scipy.stats import spearmanr

from signlab.contract import SAME_AS_ATTR
from signlab.data.dataset import load_files
from signlab.models.evaluate import evaluate
from signlab.models.train import fit, free_graph
from signlab.runs.job import prepare_data
from signlab.search.space import trial_spec
from signlab.search.study_config import load_study_config


def _rho(a: list[float], b: list[float]) -> str:
    r = spearmanr(a, b)
    return f"{r.statistic:.2f} (p {r.pvalue:.2g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file")
    parser.add_argument("--storage", default="sqlite:///optuna.db")
    parser.add_argument("--seed", type=int, default=1, help="the retest's seed (the study's trials used its own)")
    parser.add_argument("--json", type=Path, required=True, help="results, one entry per trial; resumable")
    args = parser.parse_args()
    cfg = load_study_config(args.study_file)
    study = optuna.load_study(study_name=cfg.study_name, storage=args.storage)
    done = [t for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and SAME_AS_ATTR not in t.user_attrs]
    rows: dict[str, dict] = json.loads(args.json.read_text()) if args.json.exists() else {}
    data = prepare_data(load_files(), cfg.data_settings)
    for t in done:
        if str(t.number) in rows:
            continue
        spec = trial_spec(optuna.trial.FixedTrial(t.params), cfg)
        result = fit(spec, data.train, data.val, seed=args.seed)
        rows[str(t.number)] = {
            "val": t.user_attrs["final_val_accuracy"], "test": t.user_attrs["test_accuracy"],
            "retest_val": evaluate(result.model, *data.val).accuracy,
            "retest_test": evaluate(result.model, *data.test).accuracy,
            "retest_best_epoch": result.best_epoch, "seed": args.seed,
        }
        free_graph()
        args.json.write_text(json.dumps(rows, indent=1))
        print(f"trial {t.number}: {rows[str(t.number)]}", flush=True)
    r = list(rows.values())
    val, test = [x["val"] for x in r], [x["test"] for x in r]
    val2, test2 = [x["retest_val"] for x in r], [x["retest_test"] for x in r]
    print(f"{len(r)} complete trials, Spearman rho:")
    print(f"  validation vs test, the study's seed:        {_rho(val, test)}")
    print(f"  validation vs test, seed {args.seed}:                 {_rho(val2, test2)}")
    print(f"  test vs test with seed {args.seed} (the ceiling):     {_rho(test, test2)}")
    print(f"  validation vs validation with seed {args.seed}:       {_rho(val, val2)}")
    both_val = [a + b for a, b in zip(val, val2, strict=True)]
    both_test = [a + b for a, b in zip(test, test2, strict=True)]
    print(f"  mean of both seeds, validation vs test:      {_rho(both_val, both_test)}")
    print(f"| trial | validation | test | validation, seed {args.seed} | test, seed {args.seed} |")
    for number, x in sorted(rows.items(), key=lambda kv: -kv[1]["val"]):
        print(f"| {number} | {x['val']:.2%} | {x['test']:.2%} | {x['retest_val']:.2%} | {x['retest_test']:.2%} |")


if __name__ == "__main__":
    main()
