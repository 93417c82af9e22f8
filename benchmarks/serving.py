"""Benchmark: latency of a CNN 3 `classifier` model served by `mlflow models serve` (1 and 256
test images per JSON request, `dataframe_split` and `inputs`), requests per second with 4 clients,
and the same model in-process (pyfunc `predict`, MLflow's scoring function without HTTP,
`signlab predict`'s code path).

    SIGNLAB_DATA_DIR=../shared/data/sign_mnist python benchmarks/serving.py [--workers 1 2]
        [--model-uri runs:/ID/classifier --tracking-uri sqlite:///mlflow.db] [--profile]
        [--output benchmarks/results/serving.json]

Without --model-uri it first trains one (`signlab train --preset cnn3 --epochs 1 --subset 200`,
into a temporary SQLite store): latency does not depend on the weights. Every wait is bounded;
the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import requests

from signlab.contract import CLASSIFIER_URI_TAG
from signlab.data.dataset import load_split
from signlab.models.pyfunc import PIXEL_COLUMNS
from signlab.serving.predict import predict_images

SIZES = (1, 256)
START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 30.0


def train_model(tracking_uri: str) -> str:
    """Train CNN 3 for one epoch on 200 images per letter; the run's classifier model URI."""
    cmd = [sys.executable, "-m", "signlab", "train", "--preset", "cnn3", "--epochs", "1", "--subset", "200",
           "--no-system-metrics", "--tracking-uri", tracking_uri, "--experiment", "serving-benchmark"]
    subprocess.run(cmd, check=True, timeout=600, stdout=subprocess.DEVNULL)
    runs = mlflow.MlflowClient(tracking_uri).search_runs(
        [mlflow.get_experiment_by_name("serving-benchmark").experiment_id], max_results=1)
    return runs[0].data.tags[CLASSIFIER_URI_TAG]


def test_frame(n: int) -> pd.DataFrame:
    """The first n test images as pandas reads the data set's CSV: int64 pixel1..pixel784."""
    images = load_split("test").images[:n]
    return pd.DataFrame(images.reshape(n, -1).astype(np.int64), columns=PIXEL_COLUMNS)


def payloads(frame: pd.DataFrame) -> dict[str, bytes]:
    """JSON request bodies: `dataframe_split` (matched by column name) and `inputs` (784-pixel
    rows, by position)."""
    return {"dataframe_split": json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode(),
            "inputs": json.dumps({"inputs": frame.to_numpy().tolist()}).encode()}


def timed(call: Callable[[], object], warmup: int, n: int, budget_s: float) -> list[float]:
    """Milliseconds of up to n calls after `warmup` untimed ones, stopping after budget_s."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < n and time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict[str, float]:
    """p50, p95 (ms) and the number of calls."""
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "n": len(times)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(model_uri: str, tracking_uri: str, workers: int) -> Iterator[str]:
    """`mlflow models serve` on a free local port until the block ends; yields its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # its `uvicorn`
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"mlflow models serve exited with code {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve did not answer within {START_TIMEOUT_S:.0f} s")
            try:
                if requests.get(f"{url}/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        yield url
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL after 20 s."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def post(session: requests.Session, url: str, body: bytes) -> None:
    response = session.post(f"{url}/invocations", data=body, timeout=REQUEST_TIMEOUT_S,
                            headers={"Content-Type": "application/json"})
    response.raise_for_status()


def requests_per_second(url: str, body: bytes, clients: int, total: int, budget_s: float) -> dict[str, float]:
    """Requests per second with `clients` concurrent clients, up to `total` requests or budget_s."""
    deadline = time.perf_counter() + budget_s
    done = [0] * clients

    def client(i: int) -> None:
        with requests.Session() as session:
            while sum(done) < total and time.perf_counter() < deadline:
                post(session, url, body)
                done[i] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - start
    return {"rps": round(sum(done) / elapsed, 1), "requests": sum(done), "clients": clients}


def measure_server(model_uri: str, tracking_uri: str, workers: int, bodies: dict[int, dict[str, bytes]],
                   args: argparse.Namespace) -> dict:
    """Latency per payload and request size, and throughput with 4 clients (`dataframe_split`),
    through `mlflow models serve`."""
    started = time.perf_counter()
    with served(model_uri, tracking_uri, workers) as url:
        ready_s = time.perf_counter() - started
        with requests.Session() as session:
            latency = {form: {n: summary(timed(lambda b=bodies[n][form]: post(session, url, b),
                                               args.warmup, args.requests, 60)) for n in bodies}
                       for form in bodies[SIZES[0]]}
        rps = {n: requests_per_second(url, forms["dataframe_split"], 4, args.concurrent_requests, 30)
               for n, forms in bodies.items()}
    return {"workers": workers, "ready_s": round(ready_s, 1), "latency": latency, "throughput_4_clients": rps}


def measure_in_process(model_uri: str, frames: dict[int, pd.DataFrame], bodies: dict[int, dict[str, bytes]],
                       args: argparse.Namespace) -> dict:
    """pyfunc predict, MLflow's scoring function (the server's request path without HTTP) and
    `signlab predict`'s path after loading, per request size."""
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    paths = {
        "pyfunc predict": lambda n: lambda: model.predict(frames[n]),
        "scoring_server.invocations, dataframe_split": lambda n: lambda: scoring_server.invocations(
            bodies[n]["dataframe_split"], "application/json", model, schema),
        "scoring_server.invocations, inputs": lambda n: lambda: scoring_server.invocations(
            bodies[n]["inputs"], "application/json", model, schema),
        "signlab predict (model loaded)": lambda n: lambda: predict_images(
            model, [str(i) for i in range(n)], frames[n].to_numpy().reshape(n, 28, 28), 3),
    }
    return {name: {n: summary(timed(make(n), args.warmup, args.requests, 60)) for n in frames}
            for name, make in paths.items()}


def profile_invocation(model_uri: str, body: bytes, calls: int = 50) -> str:
    """cProfile of MLflow's scoring function on one request body: the top functions by total time."""
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    for _ in range(5):
        scoring_server.invocations(body, "application/json", model, schema)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        scoring_server.invocations(body, "application/json", model, schema)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return out.getvalue()


def table(result: dict) -> str:
    """The figures as a markdown table."""
    lines = ["| path | images | p50 ms | p95 ms | n |", "|---|---:|---:|---:|---:|"]
    for server in result["server"]:
        for form, sizes in server["latency"].items():
            for n, s in sizes.items():
                lines.append(f"| `mlflow models serve -w {server['workers']}`, {form} | {n} | {s['p50_ms']} "
                             f"| {s['p95_ms']} | {s['n']} |")
    for name, sizes in result["in_process"].items():
        for n, s in sizes.items():
            lines.append(f"| {name} | {n} | {s['p50_ms']} | {s['p95_ms']} | {s['n']} |")
    lines += ["", "| server (dataframe_split) | images per request | requests/s, 4 clients | requests |",
              "|---|---:|---:|---:|"]
    for server in result["server"]:
        for n, t in server["throughput_4_clients"].items():
            lines.append(f"| `-w {server['workers']}` | {n} | {t['rps']} | {t['requests']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", help="A signlab `classifier` model (default: train one).")
    parser.add_argument("--tracking-uri", help="Where --model-uri is tracked.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="uvicorn workers to try.")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--requests", type=int, default=50, help="Timed requests per size (at most 60 s).")
    parser.add_argument("--concurrent-requests", type=int, default=100, help="Per throughput run (at most 30 s).")
    parser.add_argument("--profile", action="store_true", help="Print a cProfile of the 1-image request path.")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/serving.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tracking_uri = args.tracking_uri or f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(tracking_uri)
        model_uri = args.model_uri or train_model(tracking_uri)
        frames = {n: test_frame(n) for n in SIZES}
        bodies = {n: payloads(frame) for n, frame in frames.items()}
        if args.profile:
            print(profile_invocation(model_uri, bodies[1]["dataframe_split"]))
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "mlflow": mlflow.__version__,
            "server": [measure_server(model_uri, tracking_uri, w, bodies, args) for w in args.workers],
            "in_process": measure_in_process(model_uri, frames, bodies, args),
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"load average {result['load_average_at_start']} at start; wrote {args.output}")


if __name__ == "__main__":
    main()
