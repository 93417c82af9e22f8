"""The MLflow tracking store: its URI and credentials, a server that answers, a store that takes
writes, and how the MLflow UI shows our experiments and runs."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import mlflow

from signlab import config
from signlab.contract import SESSION_EXPERIMENT_TAG
from signlab.stores import duplicate_key

log = logging.getLogger(__name__)
T = TypeVar("T")
# What the MLflow UI calls an experiment's kind: "custom_model_development" is its "Machine learning"
# (the other values in 3.17's UI bundle: genai_development, finetuning, forecasting, ...).
KIND_TAG, CLASSIC_ML = "mlflow.experimentKind", "custom_model_development"
# The UI's view, from the page's address: 3.17 opens every experiment in its GenAI view (traces,
# judges, prompts) unless asked for "Model training" here or with the switch at its top left.
ML_VIEW = "workflowType=machine_learning"


def setup(tracking_uri: str | None = None, experiment: str | None = None, check: bool = True) -> str:
    """Point MLflow at `tracking_uri`, $MLFLOW_TRACKING_URI or sqlite:///mlflow.db (credentials
    in it moved to MLflow's variables, see `credentials_to_env`); the URI MLflow now uses.
    A SQLite store is opened here, under `stores.setup_lock`: MLflow creates and migrates its
    tables on first use, and processes doing so at once on one new file break it for good.
    The store MLflow keeps for the URI is the one every later call of this process uses.
    `check`: probe an http(s) server first (`check_server`), unless the caller just did."""
    from mlflow.tracking import MlflowClient

    from signlab.stores import setup_lock

    uri = config.tracking_uri(tracking_uri)
    if check:
        check_server(uri)
    uri = credentials_to_env(uri)
    mlflow.set_tracking_uri(uri)
    with setup_lock(uri) as locked:
        if locked:
            MlflowClient(uri).search_experiments(max_results=1)
    if experiment:
        use_experiment(experiment)
    return uri


def use_experiment(name: str) -> str:
    """Make the experiment `name` the active one, creating it if needed; its id.

    MLflow 3.17's `set_experiment(name)`, when another process creates the same experiment
    between its lookup and its create, returns that experiment *without* making it active
    (mlflow/mlflow#12259): the runs this process starts next go to the Default experiment.
    Two workers starting a new study at once hit it. Setting it again by id always does."""
    experiment_id = mlflow.set_experiment(name).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def check_server(uri: str) -> None:
    """An http(s) tracking URI must answer MLflow's /health within seconds (MLflow itself
    would retry for minutes before failing); a SQLite file must be a sound database (a
    damaged one is refused before anything is written, `stores.check_sqlite_file`)."""
    if not uri.startswith(("http://", "https://")):
        from signlab.stores import check_sqlite_file

        check_sqlite_file(uri, "MLflow tracking store")
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
        with quiet_loggers("mlflow.store.db.utils", level=logging.CRITICAL):  # it logs a traceback first
            experiment_id = experiment()
            set_experiment_tag(MlflowClient(), experiment_id, SESSION_EXPERIMENT_TAG, note)
    except mlflow.exceptions.MlflowException as exc:
        why = reason(exc.__cause__) if exc.__cause__ is not None else exc.message.splitlines()[0]
        raise UserError(f"cannot write to the MLflow tracking store {redact(uri)}: {why} "
                        "(nothing was run or logged, and no study was created or changed)") from None
    return experiment_id


@functools.cache
def mark_classic_ml(tracking_uri: str, experiment_id: str) -> None:
    """Tag an experiment `mlflow.experimentKind=custom_model_development` (classic machine
    learning: runs, metrics, models), unless it already has a kind; once per process.
    MLflow 3.17's own UI reads its Model training/GenAI switch instead (see `ML_VIEW`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if KIND_TAG not in client.get_experiment(experiment_id).tags:
        set_experiment_tag(client, experiment_id, KIND_TAG, CLASSIC_ML)


def set_experiment_tag(client: mlflow.MlflowClient, experiment_id: str, key: str, value: str) -> None:
    """`client.set_experiment_tag`, safe when workers starting together write a new tag at once."""
    retry_on_duplicate(lambda: client.set_experiment_tag(experiment_id, key, value))


def retry_on_duplicate(call: Callable[[], T], attempts: int = 5) -> T:
    """`call()`, tried again when the store refused a row that another client inserted at the
    same moment: MLflow's SQL store checks, then inserts (tags, params, datasets), so workers
    starting together on one experiment or parent run can all but one fail on the key; by
    the next try the row exists and the write finds it. Other errors are raised at once."""
    for attempt in range(attempts):
        try:
            return call()
        except mlflow.exceptions.MlflowException as exc:
            if not duplicate_key(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


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


@contextmanager
def quiet_loggers(*loggers: str, level: int = logging.ERROR) -> Iterator[None]:
    """Silence MLflow's informational logging (cloudpickle advice, example validation)."""
    saved = [(name, logging.getLogger(name).level) for name in loggers]
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)
