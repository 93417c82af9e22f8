"""MLflow: tracking URI, runs that always end with a status, params, models, datasets."""

from __future__ import annotations

import functools
import logging
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import RunStatus

from signlab import config
from signlab.contract import CLASSIFIER_ARTIFACT, CLASSIFIER_URI_TAG, MODEL_ARTIFACT, SESSION_EXPERIMENT_TAG
from signlab.errors import hold_interrupts, release_interrupts

log = logging.getLogger(__name__)
# What the MLflow UI calls an experiment's kind: "custom_model_development" is its "Machine learning"
# (the other values in 3.17's UI bundle: genai_development, finetuning, forecasting, ...).
KIND_TAG, CLASSIC_ML = "mlflow.experimentKind", "custom_model_development"
# The UI's view, from the page's address: 3.17 opens every experiment in its GenAI view (traces,
# judges, prompts) unless asked for "Model training" here or with the switch at its top left.
ML_VIEW = "workflowType=machine_learning"


def setup(tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at `tracking_uri`, $MLFLOW_TRACKING_URI or sqlite:///mlflow.db (credentials
    in it moved to MLflow's variables, see `credentials_to_env`); the URI MLflow now uses.
    A SQLite store is opened here, under `stores.setup_lock`: MLflow creates and migrates its
    tables on first use, and processes doing so at once on one new file break it for good.
    The store MLflow keeps for the URI is the one every later call of this process uses."""
    from mlflow.tracking import MlflowClient

    from signlab.stores import setup_lock

    uri = config.tracking_uri(tracking_uri)
    check_server(uri)
    uri = credentials_to_env(uri)
    mlflow.set_tracking_uri(uri)
    with setup_lock(uri) as locked:
        if locked:
            MlflowClient(uri).search_experiments(max_results=1)
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
    from signlab.stores import redact

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
    api = requests.get(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                       timeout=10, auth=config.tracking_credentials())
    if api.status_code == 403 and "host" in api.text.lower():
        raise UserError(f"MLflow tracking server {shown} refuses requests for this host name ({api.text.strip()[:80]}); "
                        "start it with --allowed-hosts naming the host:port the workers use. Nothing was run or logged.")
    if api.status_code >= 400 and api.status_code != 401:  # 401: MLflow's own client brings the credentials
        raise UserError(f"MLflow tracking server {shown} answered HTTP {api.status_code} to a search: "
                        f"{api.text.strip()[:120]}. Nothing was run or logged.")


def credentials_to_env(uri: str) -> str:
    """The tracking URI without the user:password of an http(s) URI, which go to
    $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD (for this process and the ones it
    starts), with one warning; MLflow prints the run URLs it makes from the URI. If a secret
    is still in it (a token before the host, a password parameter), MLflow is told not to
    print run URLs."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    from signlab.stores import redact

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    clean = uri
    if parts.password is not None:
        config.credentials_from_uri(uri, unquote(parts.username or ""), unquote(parts.password))
        clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        log.warning("warning: the tracking URI %s carries a password: using it as MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD instead; set those and leave it out of the URI", redact(uri))
    if redact(clean) != clean:
        config.suppress_run_urls()
        log.warning("warning: the tracking URI %s carries a secret; run URLs are not printed", redact(clean))
    return clean


def check_writable(uri: str, experiment: Callable[[], str], note: str) -> str:
    """The experiment id that `experiment()` finds or creates, after one write to the
    tracking store (the experiment's tag `signlab.last_session` = `note`): a store that
    refuses writes (a read-only database, say) is one UserError here, before anything is
    made elsewhere (an Optuna study)."""
    from mlflow.tracking import MlflowClient

    from signlab.errors import UserError
    from signlab.stores import reason, redact

    try:
        with _quiet("mlflow.store.db.utils", level=logging.CRITICAL):  # it logs a traceback first
            experiment_id = experiment()
            MlflowClient().set_experiment_tag(experiment_id, SESSION_EXPERIMENT_TAG, note)
    except mlflow.exceptions.MlflowException as exc:
        why = reason(exc.__cause__) if exc.__cause__ is not None else exc.message.splitlines()[0]
        raise UserError(f"cannot write to the MLflow tracking store {redact(uri)}: {why} "
                        "(nothing was run or logged, and no study was created or changed)") from None
    return experiment_id


def log_system_metrics(enabled: bool) -> None:
    """Record CPU, memory and (where present) GPU use on every run this process starts,
    with MLflow's system-metrics logging (psutil; pynvml for GPUs). MLflow samples every
    10 s ($MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL): its cost is in docs/benchmarks.md."""
    if enabled:
        mlflow.enable_system_metrics_logging()
    else:
        mlflow.disable_system_metrics_logging()


@contextmanager
def tracked_run(killed_on: tuple[type[BaseException], ...] = (), **start_run_kwargs: Any) -> Iterator[mlflow.ActiveRun]:
    """`mlflow.start_run` that ends FINISHED, FAILED on an exception, KILLED on Ctrl-C/SIGTERM
    (and on the exception types in `killed_on`, e.g. optuna.TrialPruned).

    Ctrl-C and SIGTERM are held back while the run is created: one landing inside
    `start_run`, after the store made the run but before it was returned, would leave a run
    RUNNING that nothing can end. They are delivered as soon as the run can be ended KILLED."""
    hold_interrupts()
    try:
        run = mlflow.start_run(**start_run_kwargs)
    except BaseException:
        release_interrupts()
        raise
    try:
        release_interrupts()  # a signal that came meanwhile is raised here, inside the try
        mark_classic_ml(mlflow.get_tracking_uri(), run.info.experiment_id)
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
        hold_interrupts()  # a run half-ended would stay RUNNING: the signal waits
        try:
            _end(RunStatus.to_string(RunStatus.FINISHED))
        finally:
            release_interrupts()


@functools.cache
def mark_classic_ml(tracking_uri: str, experiment_id: str) -> None:
    """Tag an experiment `mlflow.experimentKind=custom_model_development` (classic machine
    learning: runs, metrics, models), unless it already has a kind; once per process.
    MLflow 3.17's own UI reads its Model training/GenAI switch instead (see `ML_VIEW`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, KIND_TAG, CLASSIC_ML)


def run_page(experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI, relative to its address, in the Model training view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def run_url(run: mlflow.entities.Run) -> str | None:
    """The run's page on an http(s) tracking server; None for a SQLite (or file) store,
    whose UI is wherever someone starts `mlflow ui`, so no URL would stay true; None too
    where the URI holds a secret (it would be stored in plain sight)."""
    from signlab.stores import redact

    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")) or redact(uri) != uri:
        return None
    return f"{uri.rstrip('/')}/{run_page(run.info.experiment_id, run.info.run_id)}"


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


def log_to_active_run(paths: list[Path], artifact_path: str | None = None, launched: str | None = None) -> str | None:
    """Log files to the active run, or to `launched` (the run `mlflow run` started); its id, or None."""
    run = mlflow.active_run()
    if run is None and not launched:
        return None
    if run is None:
        setup()
    with tracked_run(run_id=launched) if run is None else nullcontext(run) as active:
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
def _quiet(*loggers: str, level: int = logging.ERROR) -> Iterator[None]:
    """Silence MLflow's informational logging (cloudpickle advice, example validation)."""
    saved = [(name, logging.getLogger(name).level) for name in loggers]
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)


def _log_models(model: Any, example_images: np.ndarray) -> str:
    from mlflow.models import ModelSignature, infer_signature

    from signlab.data.splits import scale
    from signlab.models.classifier import SKOPS_TRUSTED_TYPES
    from signlab.models.pyfunc import INPUT_DOC, PIXEL_COLUMNS, LetterPyfunc, predictions_frame

    reqs = requirements()
    pixels = example_images[:2].reshape(2, -1).astype(np.float64)
    probs = model.predict_proba(example_images[:2])
    if model.family == "cnn":
        x = scale(example_images[:2], normalised=True)[..., None]  # as the model was trained
        mlflow.tensorflow.log_model(
            model.estimator, name=MODEL_ARTIFACT, pip_requirements=reqs, input_example=x,
            signature=infer_signature(x, model.estimator.predict(x, verbose=0)),
        )
    else:
        x = pixels / 255.0 if model.normalise else pixels
        mlflow.sklearn.log_model(
            model.estimator, name=MODEL_ARTIFACT, pip_requirements=reqs, input_example=x,
            signature=infer_signature(x, model.estimator.predict_proba(x)),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    # The example is what users have: data-set rows as pandas reads them (int64 pixel columns).
    frame = pd.DataFrame(example_images[:2].reshape(2, -1).astype(np.int64), columns=PIXEL_COLUMNS)
    # No input schema: MLflow 3.17 has none that takes int frames, arrays of rows and 28x28
    # images alike (a column schema turns arrays into frames named 0..783 and refuses int64 as
    # double; a tensor schema reads frames by position). The model checks its input
    # (`pixels_of`); the input is documented by the example and the MLmodel metadata.
    signature = ModelSignature(outputs=infer_signature(frame, predictions_frame(probs)).outputs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "letter_model")
        info = mlflow.pyfunc.log_model(
            name=CLASSIFIER_ARTIFACT, python_model=LetterPyfunc(), artifacts={"letter_model": str(folder)},
            input_example=frame, signature=signature, pip_requirements=reqs, metadata={"input": INPUT_DOC},
        )
    mlflow.set_tag(CLASSIFIER_URI_TAG, info.model_uri)
    return info.model_uri
