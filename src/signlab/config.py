"""Paths and defaults, in one place: data dir, cache dir, tracking URI, study storage."""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[2]

DATA_DIR_ENV = "SIGNLAB_DATA_DIR"
CACHE_DIR_ENV = "SIGNLAB_CACHE_DIR"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_STORAGE = "sqlite:///optuna.db"

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
