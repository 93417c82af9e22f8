"""MLflow: tracking URI, runs that always end with a status, params, models, datasets."""

from __future__ import annotations

import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import RunStatus

from signlab import config


def setup(tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at `tracking_uri`, $MLFLOW_TRACKING_URI or sqlite:///mlflow.db."""
    uri = config.tracking_uri(tracking_uri)
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    if experiment:
        mlflow.set_experiment(experiment)
    return uri


def check_server(uri: str) -> None:
    """An http(s) tracking URI must answer MLflow's /health within seconds (MLflow itself
    would retry for minutes before failing)."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    from signlab.errors import UserError
    from signlab.storage import redact

    shown = redact(uri)
    try:
        answer = requests.get(uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as exc:
        cause = type(exc).__name__
        if isinstance(exc, requests.ConnectionError):
            cause = "connection refused or host unreachable"
        elif isinstance(exc, requests.Timeout):
            cause = "no answer within 10 s"
        raise UserError(f"MLflow tracking server {shown} does not answer ({cause}); start one with "
                        "`signlab server` or fix --tracking-uri / $MLFLOW_TRACKING_URI. Nothing was run "
                        "or logged.") from None
    if answer.status_code != 200:
        raise UserError(f"{shown} answered HTTP {answer.status_code} on /health: not an MLflow tracking "
                        "server? Nothing was run or logged.")
    # /health answers any Host; the API may refuse this one (MLflow's --allowed-hosts)
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    api = requests.get(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                       timeout=10, auth=(user, password) if user and password else None)
    if api.status_code == 403 and "host" in api.text.lower():
        raise UserError(f"MLflow tracking server {shown} refuses requests for this host name ({api.text.strip()[:80]}); "
                        "start it with --allowed-hosts naming the host:port the workers use. Nothing was run or logged.")
    if api.status_code >= 400 and api.status_code != 401:  # 401: MLflow's own client brings the credentials
        raise UserError(f"MLflow tracking server {shown} answered HTTP {api.status_code} to a search: "
                        f"{api.text.strip()[:120]}. Nothing was run or logged.")


@contextmanager
def tracked_run(killed_on: tuple[type[BaseException], ...] = (), **start_run_kwargs: Any) -> Iterator[mlflow.ActiveRun]:
    """`mlflow.start_run` that ends FINISHED, FAILED on an exception, KILLED on Ctrl-C/SIGTERM
    (and on the exception types in `killed_on`, e.g. optuna.TrialPruned)."""
    run = mlflow.start_run(**start_run_kwargs)
    try:
        yield run
    except KeyboardInterrupt as exc:  # the CLI's one line says which runs were ended how
        ended = _end(RunStatus.to_string(RunStatus.KILLED), quiet=True)
        exc.add_note(f"MLflow run {run.info.run_name} ({run.info.run_id}) "
                     + ("ended KILLED" if ended else "could not be ended: it stays RUNNING"))
        raise
    except killed_on:
        _end(RunStatus.to_string(RunStatus.KILLED), quiet=True)
        raise
    except BaseException:
        _end(RunStatus.to_string(RunStatus.FAILED), quiet=True)
        raise
    else:
        _end(RunStatus.to_string(RunStatus.FINISHED))


def _end(status: str, quiet: bool = False) -> bool:
    """End the active run; `quiet`: a failure to do so (the tracking server going down
    with us, say) is a warning, so it cannot replace the exception being handled. Whether
    the run was ended."""
    try:
        try:
            mlflow.flush_async_logging()
        finally:
            mlflow.end_run(status)
    except Exception as exc:
        if not quiet:
            raise
        warnings.warn(f"could not end the MLflow run as {status}: {exc}", stacklevel=3)
        return False
    return True


def log_to_active_run(paths: list[Path], artifact_path: str | None = None) -> str | None:
    """Log files to the active run, or to the one `mlflow run` started; its id, or None."""
    run = mlflow.active_run()
    if run is None and not os.environ.get("MLFLOW_RUN_ID"):
        return None
    if run is None:
        setup()
    with tracked_run() if run is None else nullcontext(run) as active:
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
        return active.info.run_id


def git_commit() -> str | None:
    """The project's git commit, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.PROJ_ROOT,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts and lists as flat MLflow params: blocks.1.filters -> 64."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    if isinstance(value, list) and value and isinstance(value[0], dict):
        out = {f"{prefix}.n": len(value)}
        for i, item in enumerate(value, start=1):
            out.update(flatten(f"{prefix}.{i}", item))
        return out
    if isinstance(value, bool):
        return {prefix: str(value).lower()}  # as MLproject parameters write them
    return {prefix: value}


def log_params(params: dict[str, Any]) -> None:
    """Log params; one that the run already has with another value (an MLproject entry
    point's parameter, say `epochs=0` for "the preset's") is logged as `<key>.effective`."""
    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params if run else {}
    fresh = {}
    for key, value in params.items():
        if key not in existing:
            fresh[key] = value
        elif existing[key] != str(value) and f"{key}.effective" not in existing:
            fresh[f"{key}.effective"] = value
    mlflow.log_params(fresh)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log metrics without waiting for the store (flushed when the run ends)."""
    mlflow.log_metrics(metrics, step=step, synchronous=False)


def log_datasets(sources: dict[str, tuple[np.ndarray, np.ndarray, str, str]]) -> None:
    """Log each (images, labels, source path, name) as an MLflow dataset input with its digest."""
    for context, (images, labels, source, name) in sources.items():
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a file
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(
                images.reshape(len(images), -1), targets=labels, source=source, name=name
            )
        _log_input(dataset, context)


def _log_input(dataset: Any, context: str, attempts: int = 5) -> None:
    """`mlflow.log_input`, tried again when another worker inserted the same dataset at the
    same moment (the store's unique key on experiment, name and digest; the retry finds it)."""
    import time

    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except mlflow.exceptions.MlflowException as exc:
            duplicate = any(s in str(exc) for s in ("UniqueViolation", "UNIQUE constraint", "Duplicate entry"))
            if not duplicate or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def requirements() -> list[str]:
    """Pinned requirements for logged models (skips MLflow's slow inference)."""
    names = ["mlflow", "tensorflow-cpu", "keras", "scikit-learn", "skops", "numpy", "pandas"]
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_models(model: Any, example_images: np.ndarray) -> str:
    """Log the model in its own flavour (`model`) and as the letters pyfunc (`classifier`).

    Returns the classifier's model URI (also set as the run tag `signlab.classifier_uri`).
    """
    with warnings.catch_warnings(), _quiet("mlflow.pyfunc", "mlflow.models"):
        warnings.simplefilter("ignore")  # MLflow's advice on type hints and pickling
        return _log_models(model, example_images)


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence MLflow's informational logging (cloudpickle advice, example validation)."""
    import logging

    saved = [(name, logging.getLogger(name).level) for name in loggers]
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)


def _log_models(model: Any, example_images: np.ndarray) -> str:
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    from signlab.classifier import SKOPS_TRUSTED_TYPES
    from signlab.pyfunc import PIXEL_COLUMNS, LetterPyfunc, predictions_frame
    from signlab.splits import scale

    reqs = requirements()
    pixels = example_images[:2].reshape(2, -1).astype(np.float64)
    probs = model.predict_proba(example_images[:2])
    if model.family == "cnn":
        x = scale(example_images[:2], normalised=True)[..., None]  # as the model was trained
        mlflow.tensorflow.log_model(
            model.estimator, name="model", pip_requirements=reqs, input_example=x,
            signature=infer_signature(x, model.estimator.predict(x, verbose=0)),
        )
    else:
        x = pixels / 255.0 if model.normalise else pixels
        mlflow.sklearn.log_model(
            model.estimator, name="model", pip_requirements=reqs, input_example=x,
            signature=infer_signature(x, model.estimator.predict_proba(x)),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    frame = pd.DataFrame(pixels, columns=PIXEL_COLUMNS)
    # Pixel columns are optional in the schema, so that a payload with missing columns reaches
    # the model, whose error names the problem in one line (MLflow's lists all 784 names).
    inputs = Schema([ColSpec("double", name, required=False) for name in PIXEL_COLUMNS])
    signature = ModelSignature(inputs, infer_signature(frame, predictions_frame(probs)).outputs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "letter_model")
        info = mlflow.pyfunc.log_model(
            name="classifier", python_model=LetterPyfunc(), artifacts={"letter_model": str(folder)},
            input_example=frame, signature=signature, pip_requirements=reqs,
        )
    mlflow.set_tag("signlab.classifier_uri", info.model_uri)
    return info.model_uri
