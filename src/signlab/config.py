"""Paths, defaults and the process environment, in one place: data dir, cache dir, tracking
URI, study storage. The one module that reads or writes os.environ (the CLI calls it at its
edge; library code gets values as parameters)."""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[2]

DATA_DIR_ENV = "SIGNLAB_DATA_DIR"
CACHE_DIR_ENV = "SIGNLAB_CACHE_DIR"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_VAL_FRACTION = 0.2  # share of the training file held out for validation
DEFAULT_VAL_STRATEGY = "grouped"  # whole groups of variants of one photo held out
HEARTBEAT_SECONDS = 15  # a live trial beats this often...
GRACE_SECONDS = 60  # ...and is marked FAIL when silent this long (its worker died)

VERBOSE_ENV = "SIGNLAB_VERBOSE"
# MLflow's variables that would make a child process resume or file into this process's run.
LAUNCHER_VARS = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")

KAGGLE_DATASET = "datamunge/sign-language-mnist"
SPLIT_FILES = {"train": "sign_mnist_train.csv", "test": "sign_mnist_test.csv"}

# SHA-256 of the original Kaggle files (CRLF, as published), their gzip -n -9 copies,
# and the LF copies that also circulate (same content).
KNOWN_SHA256 = {
    "sign_mnist_train.csv": {
        "4c2897f19fab2b0ae2a7e4fa82e969043315d9f3a1a9cc0948b576bf1189a7e5",
        "b7ff39ad5f1210fa765ce11aa5f20c2e97fe467ffc22231aac923c863eef75c4",
    },
    "sign_mnist_test.csv": {
        "0e9d67bae23e67f40728e0b63bf15ad4bd5175947b8a9fac5dd9f17ce133c47b",
        "178c0dd21c4b0e86d58df12f14ea1e9efa795ad19d146802b3b28094a16d56ae",
    },
    "sign_mnist_train.csv.gz": {"0f49c09740db130b21d5c6a3d21af62ca57a5763e28db012437a4bdd3874df4a"},
    "sign_mnist_test.csv.gz": {"fbd4604f78ddf95189da6d0812993d0f398d8422fbdfe59617e336c973a1c036"},
}


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: `explicit`, else $SIGNLAB_DATA_DIR, else ./data."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR


def cache_dir() -> Path:
    """Where parsed copies of the CSVs live: $SIGNLAB_CACHE_DIR, else ~/.cache/signlab."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "signlab"


def tracking_uri(explicit: str | None = None) -> str:
    """The MLflow tracking URI: `explicit`, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def take_launched_run() -> str | None:
    """The run `mlflow run` started this command in ($MLFLOW_RUN_ID), taken out of the
    environment: MLflow would otherwise resume it in every `start_run()` (each trial's run
    would be it) and hand it to child processes. Called once per command, by the CLI."""
    return os.environ.pop("MLFLOW_RUN_ID", None)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process (a worker, a server): this one's, without the
    launcher's MLflow run and experiment, with `extra`."""
    return {**{k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}, **extra}


def quiet_defaults() -> None:
    """Keep TensorFlow's start-up chatter and MLflow's artifact progress bars out, unless the
    user set these variables."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def verbose() -> bool:
    """Whether this process runs with `--verbose` ($SIGNLAB_VERBOSE, which its children inherit)."""
    return bool(os.environ.get(VERBOSE_ENV))


def library_logging(verbose: bool) -> str | None:
    """Set the libraries' log levels for this process and its children (workers inherit
    them): `verbose` marks $SIGNLAB_VERBOSE; otherwise TensorFlow's INFO lines and MLflow's
    below WARNING are dropped. MLflow's level, or None when verbose."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines; warnings and errors stay
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow is imported
    return os.environ["MLFLOW_LOGGING_LEVEL"]


def credentials_from_uri(uri: str, username: str, password: str) -> None:
    """Hand a tracking URI's credentials to MLflow, which reads them from its variables only;
    a $MLFLOW_TRACKING_URI equal to `uri` (children inherit it) loses them too."""
    from urllib.parse import urlsplit, urlunsplit

    os.environ["MLFLOW_TRACKING_USERNAME"] = username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    if os.environ.get("MLFLOW_TRACKING_URI") == uri:  # `mlflow run` and our workers inherit it
        parts = urlsplit(uri)
        os.environ["MLFLOW_TRACKING_URI"] = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def suppress_run_urls() -> None:
    """Tell MLflow not to print run URLs (the tracking URI holds a secret)."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def tracking_credentials() -> tuple[str, str] | None:
    """MLflow's tracking user and password from its variables, if both are set."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


# --- parallel trials ------------------------------------------------------------------------
PARALLEL_ENV = "SIGNLAB_PARALLEL"  # trials at once (`--parallel`): a number, or auto
THREADS_ENV = "SIGNLAB_THREADS"  # threads of each worker's TensorFlow intra-op pool (set by the launcher)
LAUNCHED_WORKER_ENV = "SIGNLAB_LAUNCHED_WORKER"  # "1" in a worker whose launcher prints the study's summary
TRIAL_MEMORY_BYTES = 3 << 30  # what one CNN trial may take (full data, its TensorFlow runtime: ~1.3 GB seen)


def launched_worker() -> bool:
    """Whether this process is a worker started by `study run --parallel N` or `study workers N`,
    whose launcher prints the study's summary once every worker has ended."""
    return os.environ.get(LAUNCHED_WORKER_ENV) == "1"


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_parallel() -> int:
    """How many trials the machine holds at once: one per core, as memory allows."""
    return auto_processes(machine_cores())


def auto_processes(wanted: int) -> int:
    """How many of `wanted` training processes (trials, refits) memory holds at once, at least one."""
    import psutil

    by_memory = int(psutil.virtual_memory().available // TRIAL_MEMORY_BYTES)
    return max(1, min(wanted, by_memory))


def thread_environment(workers: int) -> dict[str, str]:
    """Variables that size the thread pools of each of `workers` processes on this machine.

    TensorFlow's intra-op pool ($SIGNLAB_THREADS) gets every core in each process: pools are
    fixed when a process starts, and a trial left alone at a study's end (or a refit seed
    whose siblings ended) then uses the cores the others left, where a share would leave them
    idle. Two CNN trainings of two threads each on two cores train 0-4% fewer per minute than
    two of one thread; one alone on two threads trains 35-37% faster than on one
    (docs/benchmarks.md, "Two threads a trial?"). BLAS and OpenMP pools (scikit-learn's MLP)
    get a share of the cores: OpenBLAS threads spin while they wait, and two processes with a
    pool per core each fought over the cores."""
    cores = machine_cores()
    every, share = str(cores), str(max(1, cores // workers))
    return {THREADS_ENV: every, "TF_NUM_INTRAOP_THREADS": every, "TF_NUM_INTEROP_THREADS": "1",
            "OMP_NUM_THREADS": share, "OPENBLAS_NUM_THREADS": share, "MKL_NUM_THREADS": share}


def worker_threads() -> int | None:
    """The threads this worker's launcher gave it ($SIGNLAB_THREADS), or None (all)."""
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None
