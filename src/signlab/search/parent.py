"""The study's MLflow side: its experiment, found or created before the study is touched,
and the one parent run all its workers share (with a session run under a later `mlflow run`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import optuna
import sqlalchemy
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage

from signlab import config
from signlab.contract import (
    FAMILY_TAG,
    OBJECTIVES_PARAM,
    PARENT_ATTR,
    ROLE_SESSION,
    ROLE_STUDY,
    ROLE_TAG,
    SEED_PARAM,
    STUDY_TAG,
    SUBSET_PARAM,
    VAL_FRACTION_PARAM,
    VAL_STRATEGY_PARAM,
)
from signlab.errors import UserError
from signlab.runs import lifecycle, store
from signlab.search.optuna_internals import CappedStorage
from signlab.search.setup import check_same_data, load_or_create, study_storage
from signlab.search.storage import lock_name, study_lock, unusable_storage
from signlab.search.study_config import StudyConfig
from signlab.stores import normalise, redact, sqlite_file


def open_study(cfg: StudyConfig, storage_url: str, tracking_uri: str,
               experiment: Callable[[], str], rdb: RDBStorage | None = None) -> tuple[optuna.Study, RDBStorage, str]:
    """The study, created or resumed in a storage whose dead workers' trials are failed
    (and retried, as the file says); refused if its directions or data settings differ.
    Between opening the storage and touching the study, the study's MLflow experiment is
    found or created (`experiment()`) and written to, so that a tracking store which
    refuses writes leaves no study behind; (study, storage, experiment id)."""
    rdb = rdb or study_storage(cfg, storage_url)
    experiment_id = store.check_writable(tracking_uri, experiment, f"study {cfg.study_name} from {lifecycle.this_process()} "
                                            f"at {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    try:
        study = load_or_create(cfg, rdb, storage_url)
        check_same_data(study, cfg, storage_url)
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise unusable_storage(storage_url, exc) from None
    return study, rdb, experiment_id


def parent_run_id(study: optuna.Study, storage: RDBStorage, cfg: StudyConfig, experiment_id: str,
                  launched: str | None) -> tuple[str, str | None]:
    """The study's parent run, shared by all its workers and found again on resume, and,
    under a second `mlflow run`, the run MLflow made for this session (`launched`), filed
    under the parent as a 'session'."""
    client = MlflowClient()
    if launched and not _exists(client, launched):
        launched = None  # --tracking-uri points elsewhere than `mlflow run` logged

    def create() -> str:
        tags = {ROLE_TAG: ROLE_STUDY, STUDY_TAG: cfg.study_name, FAMILY_TAG: cfg.family}
        if not launched:
            return client.create_run(experiment_id, run_name=cfg.study_name, tags=tags).info.run_id
        for key, value in tags.items():
            client.set_tag(launched, key, value)
        client.update_run(launched, name=cfg.study_name)  # not the name `mlflow run` drew
        return launched

    parent = _shared_parent(study, storage, client, create, cfg.new_parent)
    session = launched if launched and launched != parent else None
    if session:
        client.set_tag(session, "mlflow.parentRunId", parent)
        client.set_tag(session, ROLE_TAG, ROLE_SESSION)
        client.update_run(session, name=f"{cfg.study_name}-session")
        client.set_tag(session, STUDY_TAG, cfg.study_name)
    return parent, session


def _shared_parent(study: optuna.Study, storage: RDBStorage, client: MlflowClient,
                   create: Callable[[], str], new_parent: bool = False) -> str:
    """The parent run recorded on the study, else one made by exactly one worker: the one
    holding the lock study `signlab-lock:<name>:parent` (storage.study_lock). A recorded
    parent the tracking store no longer has (its mlflow.db deleted, another store) is a
    UserError unless `new_parent`: the study's trials would point at runs that are gone."""
    known = study.user_attrs.get(PARENT_ATTR)
    if known and _exists(client, known):
        return known
    if known and not new_parent:
        raise _lost_parent(study.study_name, known, len(study.get_trials(deepcopy=False)), mlflow.get_tracking_uri())
    with study_lock(storage, lock_name(study.study_name, "parent")):
        known = study.user_attrs.get(PARENT_ATTR)  # another worker may have made it meanwhile
        if known and _exists(client, known):
            return known
        parent = create()
        study.set_user_attr(PARENT_ATTR, parent)
        return parent


def _lost_parent(name: str, parent: str, trials: int, tracking_uri: str) -> UserError:
    return UserError(f"study {name!r} records its parent run {parent}, which the MLflow tracking store "
                     f"{redact(tracking_uri)} does not hold (deleted, or not the store the study ran with), "
                     f"so its {trials} trials' runs point at nothing. Nothing was run: point --tracking-uri at the "
                     "store that has it, or pass --new-parent to go on under a new parent run")


def _check_tracking_file(rdb: RDBStorage, name: str, tracking_uri: str) -> None:
    """A stored study with a parent run, and a SQLite tracking file that is not there (deleted,
    or run from another folder): refused before the file is made anew (`_shared_parent`
    refuses the same in any store, once the store is open)."""
    database = sqlite_file(tracking_uri)
    if database is None or database.exists():
        return
    parent = _stored_parent(rdb, name)
    if parent:
        raise _lost_parent(name, parent, rdb.get_n_trials(rdb.get_study_id_from_name(name)), tracking_uri)


def _exists(client: MlflowClient, run_id: str) -> bool:
    """Whether the run exists and is not deleted; other errors (a server hiccup) are raised,
    not read as "no such run" (which would make a second parent run)."""
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def study_experiment(cfg: StudyConfig, launched: str | None, rdb: RDBStorage | None = None) -> str:
    """The experiment id: that of `mlflow run`'s run, else that of the parent run the stored
    study records (in `rdb`: a worker, a resume), else the study file's `experiment` (default:
    the study name). The parent's comes before the name: `mlflow run` without
    `--experiment-name` files the parent under MLflow's Default experiment, and a worker must
    open its trials' runs where their parent is."""
    client = MlflowClient()
    known = None if rdb is None or cfg.new_parent else _stored_parent(rdb, cfg.study_name)
    for run_id in (launched, known):
        if run_id and _exists(client, run_id):
            experiment_id = client.get_run(run_id).info.experiment_id
            mlflow.set_experiment(experiment_id=experiment_id)
            return experiment_id
    return store.use_experiment(cfg.experiment or cfg.study_name)


def _stored_parent(rdb: RDBStorage, name: str) -> str | None:
    """The parent run recorded on the stored study `name`, read without creating anything."""
    try:
        study_id = rdb.get_study_id_from_name(name)
    except KeyError:
        return None
    return rdb.get_study_user_attrs(study_id).get(PARENT_ATTR)


def study_params(cfg: StudyConfig, storage_url: str) -> dict[str, Any]:
    """The study's settings, as its parent run's params."""
    import json

    return {
        "study_name": cfg.study_name, "family": cfg.family, OBJECTIVES_PARAM: ",".join(cfg.objectives),
        "directions": ",".join(cfg.directions or []), "sampler": cfg.sampler.type,
        "sampler_seed": cfg.sampler.seed, "pruner": cfg.pruner.type, "max_epochs": cfg.max_epochs,
        VAL_STRATEGY_PARAM: cfg.validation.strategy, VAL_FRACTION_PARAM: cfg.validation.fraction, SUBSET_PARAM: cfg.subset,
        SEED_PARAM: cfg.seed,
        "storage": redact(normalise(storage_url)), "space": json.dumps({k: v.model_dump() for k, v in cfg.space.items()})[:6000],
        "fixed": json.dumps(cfg.fixed)[:6000],
    }


@dataclass
class Session:
    """What a worker works with: the study and its storage, the tracking URI MLflow uses, the
    study's experiment, its parent run, and the run `mlflow run` made for this session."""

    study: optuna.Study
    storage: CappedStorage
    tracking_uri: str
    experiment_id: str
    parent: str
    session: str | None


def start_session(cfg: StudyConfig, storage_url: str, tracking_uri: str | None, launched: str | None,
                  cap: int | None = None) -> Session:
    """Open both stores and the study, and find or make its parent run (`cap`: the most trials
    the study may hold, all workers together). Nothing is created anywhere unless both stores
    can work: a tracking server that does not answer stops us before the storage is opened, a
    damaged storage before the tracking store is set up."""
    store.check_server(config.tracking_uri(tracking_uri))
    rdb = study_storage(cfg, storage_url, cap)
    if not cfg.new_parent:
        _check_tracking_file(rdb, cfg.study_name, config.tracking_uri(tracking_uri))
    uri = store.setup(tracking_uri, check=False)  # probed just above
    study, rdb, experiment_id = open_study(cfg, storage_url, uri, lambda: study_experiment(cfg, launched, rdb), rdb)
    parent, session = parent_run_id(study, rdb, cfg, experiment_id, launched)
    return Session(study, rdb, uri, experiment_id, parent, session)
