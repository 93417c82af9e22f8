"""Benchmark: the ceiling of the coordination path with many workers (8, 32, 64), trials that
train nothing (`simulate:` in benchmarks/many_workers_study.yaml), Optuna storage on
PostgreSQL directly or through Optuna's gRPC storage proxy, runs on `signlab server`
(PostgreSQL backend store); everything on 127.0.0.1 in a throwaway cluster.

    python benchmarks/many_workers.py [--workers 8 32 64] [--proxy none grpc] [--n-trials 600]
        [--timeout 100] [--nice 10] [--server-pool 20:40] [--output benchmarks/results/many_workers.json]

`--proxy grpc` puts Optuna's gRPC storage proxy between the workers and the database
(benchmarks/grpc_storage.py; signlab does not offer it, see docs/distributed.md). `--nice 10`
runs the workers at a lower priority, so the server and PostgreSQL get the cores first as
they would on machines of their own; `--server-pool SIZE:OVERFLOW` sets the MLflow server's
database pool ($MLFLOW_SQLALCHEMYSTORE_POOL_SIZE and _MAX_OVERFLOW; MLflow's default 5:10).

Each configuration gets fresh databases and a fresh server, then runs `signlab study workers N
benchmarks/many_workers_study.yaml --n-trials CAP --timeout T` (no worker starts a trial after
T s of its own, nor past CAP trials in all), killed after T + 150 s at the latest. A sampler
reads pg_stat_activity, the workers' memory and every process group's CPU each second. A
configuration whose workers would not fit in the free memory is skipped, saying so.

Trials per second: finished trials over the steady window, from the moment the last worker
started its first trial to the moment the first worker ended its last one (all N at work),
and over the whole run. With no training, a trial's wall time is its storage and tracking
time (sampling included): p50/p95 of Optuna's trial durations.
Needs Debian's postgresql package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import psutil
import sqlalchemy
from grpc_storage import proxy_client
from mlflow.tracking import MlflowClient
from workers_throughput import database, free_port, wait_for

from signlab.config import data_dir
from signlab.contract import ROLE_TAG, ROLE_TRIAL, STUDY_TAG, WORKER_TAG

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks/many_workers_study.yaml"
GRPC = ROOT / "benchmarks/grpc_storage.py"  # Optuna's gRPC storage proxy, and signlab's workers through it
NAME = "many_workers"
MARGIN_BYTES = 2 * 2**30  # memory left free for the server, PostgreSQL and everyone else
WORKER_BYTES = 400 * 2**20  # a worker's peak RSS until one is measured (Python, MLflow, Optuna, pandas)


class Sampler(threading.Thread):
    """Every second: PostgreSQL client connections per database, the workers' RSS, and the
    CPU seconds of each process group (workers, MLflow server, PostgreSQL, gRPC proxy)."""

    def __init__(self, admin: str, groups: dict[str, psutil.Process | None], launcher: psutil.Process):
        super().__init__(daemon=True)
        self.engine = sqlalchemy.create_engine(admin, pool_size=1)
        self.groups, self.launcher = groups, launcher
        self.stop = threading.Event()
        self.connections: list[dict[str, int]] = []
        self.worker_rss: list[int] = []
        self.max_worker_rss = 0
        self.cpu: dict[str, dict[int, float]] = {name: {} for name in [*groups, "workers"]}
        self.cpu_before = {name: _cpu(proc) for name, proc in groups.items()}

    def run(self) -> None:
        query = sqlalchemy.text("SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                "AND pid <> pg_backend_pid() GROUP BY datname")
        while not self.stop.wait(1.0):
            try:
                with self.engine.connect() as conn:
                    self.connections.append({str(db): int(n) for db, n in conn.execute(query)})
            except sqlalchemy.exc.SQLAlchemyError:
                self.connections.append({"sampler_refused": 1})  # too many clients, say
            for name, proc in self.groups.items():
                self._add_cpu(name, proc)
            workers = _descendants(self.launcher)
            rss = [_rss(p) for p in workers]
            self.worker_rss.append(sum(rss))
            self.max_worker_rss = max([self.max_worker_rss, *rss])
            for p in workers:
                self._record(self.cpu["workers"], p)

    def _add_cpu(self, name: str, proc: psutil.Process | None) -> None:
        if proc is not None:
            for p in [proc, *_descendants(proc)]:
                self._record(self.cpu[name], p)

    @staticmethod
    def _record(seen: dict[int, float], proc: psutil.Process) -> None:
        try:
            times = proc.cpu_times()
            seen[proc.pid] = times.user + times.system
        except psutil.Error:
            pass

    def cpu_seconds(self) -> dict[str, float]:
        used = {name: sum(seen.values()) for name, seen in self.cpu.items()}
        for name, before in self.cpu_before.items():
            used[name] -= before
        return {name: round(value, 1) for name, value in used.items()}


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    total = 0.0
    for p in [proc, *_descendants(proc)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def postmaster(pg: Path) -> psutil.Process:
    """The PostgreSQL server process of the throwaway cluster in `pg`."""
    cluster = Path((pg / "cluster-path").read_text().strip()) if (pg / "cluster-path").exists() else pg
    return psutil.Process(int((cluster / "data/postmaster.pid").read_text().split()[0]))


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen | None, seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL after `seconds`, for the process and anything it started."""
    if proc is None or proc.poll() is not None:
        return
    children = _descendants(psutil.Process(proc.pid))
    proc.terminate()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass


def wait_for_proxy(port: int, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proxy_client(f"grpc://127.0.0.1:{port}", wait=2).close()
            return
        except Exception:  # noqa: BLE001 (not up yet)
            time.sleep(0.5)
    raise SystemExit("the gRPC storage proxy did not start")


def measure(n: int, proxy: str, opts: argparse.Namespace, admin: str, pg: Path, tmp: Path, log_dir: Path) -> dict:
    """Run the simulated study with n workers on fresh databases; its figures."""
    cap, timeout = opts.n_trials, opts.timeout
    tag = f"w{n}_{proxy}_p{opts.server_pool}_n{opts.nice}".replace(":", "_").lower()
    storage, backend = database(admin, f"optuna_{tag}"), database(admin, f"mlflow_{tag}")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "SIGNLAB_DATA_DIR": str(data_dir(None).resolve())}
    if opts.server_pool:  # the MLflow server's SQLAlchemy pool (MLflow's default: 5 + 10 overflow)
        size, overflow = opts.server_pool.split(":")
        env |= {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": size, "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": overflow}
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    logs = {name: log_dir / f"{tag}_{name}.log" for name in ("server", "proxy", "workers")}
    server = start([sys.executable, "-m", "signlab", "server", "--backend-store-uri", backend,
                    "--artifacts-destination", str(tmp / f"artifacts_{tag}"), "--port", str(port)], env, logs["server"])
    proxy_proc, worker_storage = None, storage
    launcher = None
    try:
        wait_for(uri, server)
        if proxy == "grpc":
            proxy_port = free_port()
            proxy_proc = start([sys.executable, str(GRPC), "serve", str(proxy_port)], {**env, "PROXIED_STORAGE": storage},
                               logs["proxy"])
            wait_for_proxy(proxy_port, proxy_proc)
            worker_storage = f"grpc://127.0.0.1:{proxy_port}"
        load_before = os.getloadavg()
        started = time.perf_counter()
        signlab = [str(GRPC), "signlab"] if proxy == "grpc" else ["-m", "signlab"]  # grpc: storage through the proxy
        launcher = start(["nice", "-n", str(opts.nice), sys.executable, *signlab, "study", "workers", str(n), str(STUDY),
                          "--storage", worker_storage, "--tracking-uri", uri, "--n-trials", str(cap),
                          "--timeout", str(timeout)], env, logs["workers"])
        groups = {"server": psutil.Process(server.pid), "postgres": postmaster(pg),
                  "proxy": psutil.Process(proxy_proc.pid) if proxy_proc else None}
        sampler = Sampler(admin, groups, psutil.Process(launcher.pid))
        sampler.start()
        try:
            code = launcher.wait(timeout=timeout + 150)
        except subprocess.TimeoutExpired:
            launcher.send_signal(signal.SIGTERM)  # passed on to every worker
            code = launcher.returncode if _wait(launcher, 60) else "killed"
        wall = time.perf_counter() - started
        served = logs["server"].stat().st_size  # server log lines from here on are its shutdown
        sampler.stop.set()
        sampler.join(timeout=10)
        sampler.engine.dispose()
        load_after = os.getloadavg()
        runs = trial_runs(uri)
    finally:
        stop(launcher, 10)
        stop(proxy_proc)
        stop(server, 60)
    row = figures(n, proxy, storage, runs, sampler, wall, code, logs, served, load_before, load_after, cap, timeout)
    row.update(server_pool=opts.server_pool or "5:10 (MLflow's default)", workers_nice=opts.nice)
    shutdown = logs["server"].read_text(errors="replace")[served:]
    row["errors"]["server_error_lines_at_shutdown"] = len(re.findall(r"ERROR|Traceback|error", shutdown))
    return row


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def trial_runs(uri: str) -> list:
    """Every trial run of the study on the server (all pages)."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(NAME)
    if experiment is None:  # no worker got as far as the study
        return []
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' and "
                                  f"tags.{STUDY_TAG} = '{NAME}'", max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def figures(n: int, proxy: str, storage: str, runs: list, sampler: Sampler, wall: float, code: int | str,
            logs: dict[str, Path], served: int, load_before: tuple, load_after: tuple, cap: int, timeout: int) -> dict:
    """The configuration's row: throughput, time per trial, connections, memory, CPU, errors."""
    text = {name: path.read_text(errors="replace") if path.exists() else "" for name, path in logs.items()}
    text["server"] = text["server"][:served]  # until the last worker exited
    rdb = optuna.storages.RDBStorage(storage)
    try:
        trials = optuna.load_study(study_name=NAME, storage=rdb).get_trials(deepcopy=False)
    except KeyError:  # no worker got as far as the study
        raise SystemExit(f"{n} workers ({proxy}): no study was made; the launcher said:\n{text['workers'][-2000:]}") from None
    finally:
        rdb.engine.dispose()  # its connections would count in the next configuration's
    finished = [t for t in trials if t.state.is_finished() and t.datetime_start and t.datetime_complete]
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    seconds = sorted(t.duration.total_seconds() for t in finished)
    first = min(t.datetime_start for t in finished).timestamp()
    last = max(t.datetime_complete for t in finished).timestamp()
    by_worker: dict[str, list] = {}
    for run in runs:
        if run.info.end_time:
            by_worker.setdefault(run.data.tags.get(WORKER_TAG, "?"), []).append(run)
    steady_from = max(min(r.info.start_time for r in rs) for rs in by_worker.values()) / 1000
    steady_to = min(max(r.info.end_time for r in rs) for rs in by_worker.values()) / 1000
    steady = [t for t in finished if steady_from <= t.datetime_complete.timestamp() <= steady_to]
    steady_s = steady_to - steady_from
    run_s = sorted((r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time)
    report_s = sorted(r.data.metrics["report_seconds"] for r in runs if "report_seconds" in r.data.metrics)
    connections = [sum(v for k, v in s.items() if k != "sampler_refused") for s in sampler.connections]
    per_db = {}
    for sample in sampler.connections:
        for db, count in sample.items():
            per_db[db] = max(per_db.get(db, 0), count)
    return {
        "workers": n, "storage": "grpc proxy" if proxy == "grpc" else "postgresql", "cap": cap, "timeout_s": timeout,
        "wall_s": round(wall, 1), "trials": len(trials), "states": {k: v for k, v in states.items() if v},
        "trials_per_s_steady": round(len(steady) / steady_s, 2) if steady_s > 0 else None,
        "steady_window_s": round(steady_s, 1), "trials_per_s_overall": round(len(finished) / (last - first), 2),
        "workers_with_trials": len(by_worker),
        "trial_s_p50": _pct(seconds, 50), "trial_s_p95": _pct(seconds, 95),
        "run_s_p50": _pct(run_s, 50), "run_s_p95": _pct(run_s, 95),
        "report_s_p50": _pct(report_s, 50), "report_s_p95": _pct(report_s, 95),
        "pg_connections_max": max(connections, default=0),
        "pg_connections_median": statistics.median(connections) if connections else 0,
        "pg_connections_max_per_db": per_db,
        "worker_rss_max_mb": round(sampler.max_worker_rss / 2**20), "workers_rss_total_max_mb":
            round(max(sampler.worker_rss, default=0) / 2**20),
        "cpu_s": sampler.cpu_seconds(),
        "runs": len(runs), "runs_by_status": {s: sum(r.info.status == s for r in runs)
                                              for s in {r.info.status for r in runs}},
        "errors": {
            "launcher_exit": code,
            "worker_exit_codes": re.findall(r"worker (\d+) exited with code (\d+)", text["workers"]),
            "worker_tracebacks": text["workers"].count("Traceback"),
            "worker_error_lines": sum(1 for line in text["workers"].splitlines() if "error" in line.lower()),
            "server_error_lines": sum(1 for line in text["server"].splitlines()
                                      if re.search(r"ERROR|Traceback|error|\" 5\d\d", line)),
            "proxy_error_lines": sum(1 for line in text["proxy"].splitlines() if re.search(r"ERROR|Traceback", line)),
            "failed_trials": states.get("FAIL", 0),
        },
        "error_samples": [line for line in text["workers"].splitlines() if "error" in line.lower()][:5]
            + [line for line in text["server"].splitlines() if re.search(r"ERROR|Traceback", line)][:5],
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after],
    }


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))], 3)


def fits(n: int, per_worker: int) -> tuple[bool, str]:
    """Whether n workers fit in the memory free now; why not."""
    free = psutil.virtual_memory().available
    need = n * per_worker + MARGIN_BYTES
    return need <= free, (f"{n} workers need about {need / 2**30:.1f} GiB ({per_worker / 2**20:.0f} MiB each + "
                          f"{MARGIN_BYTES / 2**30:.0f} GiB margin), {free / 2**30:.1f} GiB is free")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--proxy", nargs="+", choices=["none", "grpc"], default=["none", "grpc"])
    parser.add_argument("--n-trials", type=int, default=600, help="cap on the study's trials, all workers together")
    parser.add_argument("--timeout", type=int, default=100, help="seconds after which a worker starts no trial")
    parser.add_argument("--nice", type=int, default=0,
                        help="the workers' niceness: 10 gives the server and PostgreSQL the cores first, "
                             "as if the workers ran on other machines")
    parser.add_argument("--server-pool", help="SIZE:OVERFLOW of the MLflow server's database pool")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/many_workers.json")
    args = parser.parse_args()
    rows, skipped, per_worker = [], [], WORKER_BYTES
    log_dir = Path(tempfile.mkdtemp(prefix="many_workers_logs_"))
    print(f"logs of the workers, servers and proxies: {log_dir}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pg = Path(tmp) / "pg"
        admin = subprocess.run(["bash", str(ROOT / "scripts/throwaway-postgres.sh"), "start", str(pg)],
                               capture_output=True, text=True, check=True, timeout=120).stdout.strip()
        try:
            for n in args.workers:
                ok, why = fits(n, per_worker)
                if not ok:
                    print(f"skipped: {why}", flush=True)
                    skipped.append(why)
                    continue
                for proxy in args.proxy:
                    rows.append(measure(n, proxy, args, admin, pg, Path(tmp), log_dir))
                    per_worker = max(per_worker, rows[-1]["worker_rss_max_mb"] * 2**20)
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            subprocess.run(["bash", str(ROOT / "scripts/throwaway-postgres.sh"), "stop", str(pg)], check=False,
                           timeout=120)
    result = {"machine": f"{platform.node()}, {os.cpu_count()} CPUs, "
                         f"{psutil.virtual_memory().total / 2**30:.0f} GiB", "study": str(STUDY.relative_to(ROOT)),
              "command": "python benchmarks/many_workers.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M %z"), "skipped": skipped, "results": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
