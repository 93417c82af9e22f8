"""Benchmark: trials per hour with 1 and 2 workers on one study, on the same wall-clock
budget, in the team set-up of docs/distributed.md: Optuna storage on PostgreSQL, runs on
`signlab server` (PostgreSQL backend store), both on 127.0.0.1 in a throwaway cluster.

    python benchmarks/workers_throughput.py [--workers 1 2] [--budget 600] [--subset 100]
        [--max-epochs 3] [--output benchmarks/results/workers_throughput.json]

Each configuration runs `signlab study workers N benchmarks/throughput_study.yaml --timeout
BUDGET` on a fresh database: no trial starts after BUDGET seconds, those running finish.
Trials per hour = finished trials / wall seconds from launch to the last worker's exit x 3600.
Busy cores: the trial runs' MLflow system metrics (`system/cpu_utilization_percentage`, the
whole machine's CPU use, sampled every `--sampling` seconds), read back from the server:
their median and the share of samples with both cores over 90% busy.
Needs Debian's postgresql package; run on a quiet machine (the CPU figures are machine-wide).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import sqlalchemy

from signlab.config import data_dir
from signlab.contract import ROLE_TAG, ROLE_TRIAL

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks/throughput_study.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database(admin: str, name: str) -> str:
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return sqlalchemy.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("signlab server exited")
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("signlab server did not answer")


CPU_METRIC = "system/cpu_utilization_percentage"


def cpu_use(uri: str) -> dict:
    """The machine's CPU use while trials ran, from every trial run's system metrics."""
    import statistics

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("throughput")
    samples = [m.value for run in client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'",
                                                    max_results=5000)
               for m in client.get_metric_history(run.info.run_id, CPU_METRIC)]
    if not samples:
        return {"cpu_samples": 0}
    return {"cpu_samples": len(samples), "cpu_median_pct": round(statistics.median(samples), 1),
            "cpu_mean_pct": round(statistics.fmean(samples), 1),
            "cpu_share_over_90pct": round(sum(v > 90 for v in samples) / len(samples), 3)}


def measure(n: int, budget: int, subset: int, epochs: int, admin: str, tmp: Path, sampling: float) -> dict:
    """Run the study with n workers on fresh databases; its figures."""
    tag = f"w{n}_s{subset}_e{epochs}"
    storage, backend = database(admin, f"optuna_{tag}"), database(admin, f"mlflow_{tag}")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
           "SIGNLAB_DATA_DIR": str(data_dir(None).resolve()), "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": str(sampling)}
    server = subprocess.Popen([sys.executable, "-m", "signlab", "server", "--backend-store-uri", backend,
                               "--artifacts-destination", str(tmp / f"artifacts{n}"), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(uri, server)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "signlab", "study", "workers", str(n), str(STUDY), "--storage", storage,
                        "--tracking-uri", uri, "--timeout", str(budget), "--subset", str(subset),
                        "--max-epochs", str(epochs)], env=env, check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        cpu = cpu_use(uri)
    finally:
        server.terminate()
        server.wait(timeout=60)
    study = optuna.load_study(study_name="throughput", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    seconds = sorted(t.duration.total_seconds() for t in finished)
    return {"workers": n, "subset": subset, "max_epochs": epochs, "budget_s": budget,
            "wall_s": round(wall, 1), "trials": len(finished),
            "complete": len(complete), "trials_per_hour": round(len(finished) / wall * 3600, 1),
            "median_trial_s": round(seconds[len(seconds) // 2], 1) if seconds else None,
            "best_val_accuracy": round(max(t.value for t in complete), 4) if complete else None, **cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--budget", type=int, default=600, help="seconds after which no trial starts")
    parser.add_argument("--subset", type=int, default=100, help="images per class")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--sampling", type=float, default=2.0, help="seconds between system-metric samples")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/workers_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = Path(tmp) / "pg"
        admin = subprocess.run(["bash", str(ROOT / "scripts/throwaway-postgres.sh"), "start", str(pg)],
                               capture_output=True, text=True, check=True).stdout.strip()
        try:
            rows = []
            for n in args.workers:
                rows.append(measure(n, args.budget, args.subset, args.max_epochs, admin, Path(tmp), args.sampling))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            subprocess.run(["bash", str(ROOT / "scripts/throwaway-postgres.sh"), "stop", str(pg)], check=False)
    result = {"machine": f"{platform.node()}, {os.cpu_count()} CPUs", "study": str(STUDY.relative_to(ROOT)),
              "command": "python benchmarks/workers_throughput.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "results": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
