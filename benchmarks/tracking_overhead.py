"""Tracking overhead: what a run costs besides training, and what system-metrics sampling costs.

    python benchmarks/tracking_overhead.py --store sqlite:////work/runs/mlflow.db      # recorded studies
    python benchmarks/tracking_overhead.py --train                                        # one full-data run
    python benchmarks/tracking_overhead.py --system-metrics 50                            # 50 sampling cycles

--store: for every experiment, the FINISHED trial and refit runs: wall time (end - start) against
`train_seconds`, and where runs logged them, `evaluate_seconds`, `log_artifacts_seconds`,
`log_models_seconds`. --train: one CNN 3 run of 1 epoch on the full data (the fixed costs do
not depend on the number of epochs) in a temporary SQLite store, with that breakdown.
--system-metrics N: N cycles of MLflow's SystemMetricsMonitor as its thread runs them (collect,
the run-status query, aggregate, publish and flush), timed; the share of one core it takes at
the default 10 s interval. Writes benchmarks/results/tracking_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "tracking_overhead.json"
PARTS = ("evaluate_seconds", "log_artifacts_seconds", "log_models_seconds")


def recorded(store: str) -> dict[str, dict[str, float]]:
    """Per experiment: runs, mean wall and training seconds, the overhead's share, and the parts."""
    from mlflow.tracking import MlflowClient

    from signlab.contract import ROLE_TAG

    client = MlflowClient(tracking_uri=store)
    out = {}
    for exp in client.search_experiments():
        runs = [r for role in ("trial", "refit") for r in client.search_runs(
            [exp.experiment_id], f"tags.`{ROLE_TAG}` = '{role}' and attributes.status = 'FINISHED'", max_results=5000)]
        runs = [r for r in runs if "train_seconds" in r.data.metrics and r.info.end_time]
        if not runs:
            continue
        wall = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
        train = [r.data.metrics["train_seconds"] for r in runs]
        row = {"runs": len(runs), "wall_s": statistics.mean(wall), "train_s": statistics.mean(train),
               "overhead_s": statistics.mean(w - t for w, t in zip(wall, train, strict=True)),
               "overhead_share": (sum(wall) - sum(train)) / sum(wall)}
        for part in PARTS:
            values = [r.data.metrics[part] for r in runs if part in r.data.metrics]
            if values:
                row[part] = statistics.mean(values)
        out[exp.name] = row
    return out


def one_run(data_dir: str | None) -> dict[str, float]:
    """One CNN 3 epoch on the full data, logged as a run in a temporary store; its timings."""
    from signlab.data.dataset import load_files
    from signlab.models.presets import make_spec
    from signlab.runs.job import run_job

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcome = run_job(make_spec("cnn3", epochs=1), load_files(data_dir), run_name="overhead", tags={},
                          tracking_uri=f"sqlite:///{tmp}/mlflow.db", experiment="overhead")
        wall = time.perf_counter() - started
    return {"job_wall_s": wall, "train_s": outcome.metrics["train_seconds"],
            **{part: outcome.metrics[part] for part in PARTS}}


def system_metrics(cycles: int) -> dict[str, float]:
    """Seconds per sampling cycle of MLflow's monitor, and its share of one core at 10 s."""
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("system-metrics")
        with mlflow.start_run() as run:
            monitor = SystemMetricsMonitor(run.info.run_id, tracking_uri=uri)
            client = MlflowClient(uri)
            times = []
            for _ in range(cycles):
                started = time.perf_counter()
                monitor.collect_metrics()
                client.get_run(run.info.run_id)  # the status check of each cycle
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
                times.append(time.perf_counter() - started)
    per_cycle = statistics.median(times)
    p95 = sorted(times)[max(0, int(0.95 * len(times)) - 1)]
    return {"cycles": cycles, "cycle_ms_median": 1000 * per_cycle, "cycle_ms_p95": 1000 * p95,
            "share_of_one_core_at_10s": per_cycle / 10.0}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", default=[], help="a tracking URI with recorded studies")
    parser.add_argument("--train", action="store_true", help="time one full-data run")
    parser.add_argument("--data-dir")
    parser.add_argument("--system-metrics", type=int, default=0, metavar="N", help="time N sampling cycles")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    for store in args.store:
        results[store] = recorded(store)
    if args.train:
        results["one_run"] = one_run(args.data_dir)
    if args.system_metrics:
        results["system_metrics"] = system_metrics(args.system_metrics)
    print(json.dumps(results, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
