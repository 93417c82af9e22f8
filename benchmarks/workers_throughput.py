"""Benchmark: trials per hour with 1 and 2 workers on one study, on the same wall-clock
budget, in the team set-up of docs/distributed.md: Optuna storage on PostgreSQL, runs on
`signlab server` (PostgreSQL backend store), both on 127.0.0.1 in a throwaway cluster.

    python benchmarks/workers_throughput.py [--workers 1 2] [--budget 600] [--subset 100]
        [--max-epochs 3] [--output benchmarks/results/workers_throughput.json]

Each configuration runs `signlab study workers N benchmarks/throughput_study.yaml --timeout
BUDGET` on a fresh database: no trial starts after BUDGET seconds, those running finish.
Trials per hour = finished trials / wall seconds from launch to the last worker's exit x 3600.
Needs Debian's postgresql package; run on a quiet machine.
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


def measure(n: int, budget: int, subset: int, epochs: int, admin: str, tmp: Path) -> dict:
    """Run the study with n workers on fresh databases; its figures."""
    tag = f"w{n}_s{subset}_e{epochs}"
    storage, backend = database(admin, f"optuna_{tag}"), database(admin, f"mlflow_{tag}")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
           "SIGNLAB_DATA_DIR": str(data_dir(None).resolve())}
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
            "best_val_accuracy": round(max(t.value for t in complete), 4) if complete else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--budget", type=int, default=600, help="seconds after which no trial starts")
    parser.add_argument("--subset", type=int, default=100, help="images per class")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/workers_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = Path(tmp) / "pg"
        admin = subprocess.run(["bash", str(ROOT / "scripts/throwaway-postgres.sh"), "start", str(pg)],
                               capture_output=True, text=True, check=True).stdout.strip()
        try:
            rows = []
            for n in args.workers:
                rows.append(measure(n, args.budget, args.subset, args.max_epochs, admin, Path(tmp)))
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
