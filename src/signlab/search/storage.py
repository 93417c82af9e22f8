"""Optuna storage: any SQLAlchemy URL, heartbeats on, passwords never shown."""

from __future__ import annotations

import shlex
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from signlab import config
from signlab.errors import UserError
from signlab.search.optuna_internals import CappedStorage
from signlab.search.study_config import RESERVED_PREFIX
from signlab.signals import hold_interrupts, release_interrupts
from signlab.stores import duplicate_key, no_driver, parse, reason, setup_lock, where

HEARTBEAT_SECONDS, GRACE_SECONDS = config.HEARTBEAT_SECONDS, config.GRACE_SECONDS
LOCK_WAIT_SECONDS = 120.0  # longest wait for another worker's lock study
# How long an SQLite writer waits for another's lock. sqlite3's default, 5 s, was exceeded when
# two parallel workers both failed their trials at one Ctrl-C on a loaded machine.
SQLITE_BUSY_SECONDS = 60

FailedTrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def open_storage(url: str, heartbeat_interval: int = HEARTBEAT_SECONDS, grace_period: int = GRACE_SECONDS,
                 on_failed_trial: FailedTrialCallback | None = None, cap: int | None = None) -> CappedStorage:
    """An RDBStorage with heartbeats: a trial whose worker died is failed (and handed to
    `on_failed_trial`); with `cap`, no trial is made past that many in the study, all workers
    together. Errors say where the database is, without the password, and that nothing was
    changed."""
    url, parsed = parse(url, "storage", config.DEFAULT_STORAGE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own summary says what happened
    engine = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if parsed.get_backend_name() == "sqlite" else {}
    try:
        rdb = _rdb_storage(url, heartbeat_interval, grace_period, on_failed_trial, cap, engine)
    except ImportError:
        raise no_driver("storage", url, parsed) from None
    except UserError:
        raise
    except Exception as exc:  # SQLAlchemy raises many kinds: driver, connection, authentication
        raise UserError(f"cannot open study storage {where(parsed)}: {reason(exc)} "
                        "(nothing was changed: the studies stored there are untouched)") from None
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite(rdb, url)
    return rdb


def _check_sqlite(rdb: RDBStorage, url: str) -> None:
    """SQLite's own check of the whole file, so that a damaged one is refused before anything
    is created elsewhere (it would otherwise fail at the first read of a damaged page)."""
    import sqlalchemy

    try:
        with rdb.engine.connect() as connection:
            verdict = connection.exec_driver_sql("PRAGMA quick_check").scalar()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise unusable_storage(url, exc) from None
    if verdict != "ok":
        raise unusable_storage(url, RuntimeError(f"database disk image is malformed ({verdict})"))


def unusable_storage(url: str, exc: BaseException) -> UserError:
    """The error for a storage that opened but fails when its studies are read (a corrupt
    SQLite file, say): where it is and the database's own words."""
    _, parsed = parse(url, "storage", config.DEFAULT_STORAGE)
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return UserError(f"study storage {where(parsed)} is not a usable Optuna database: {reason(cause)} "
                     "(nothing was changed)")


def _trial_lock(storage: RDBStorage, study_name: str) -> AbstractContextManager[None]:
    """The lock under which a capped study's trials are counted and made."""
    return study_lock(storage, lock_name(study_name, "trials"))


def lock_name(study_name: str, what: str) -> str:
    """The lock study guarding `what` ("trials", "parent", "post-search") of a study: `signlab-lock:<study>:<what>`.
    No user study can be named so (StudyConfig refuses the prefix), so a user's study never
    holds a lock, and removing a stale lock never removes a user's study. (Before, locks were
    `<study>:trial-lock` and `<study>:parent-lock`; ones left by a dead worker of that
    version are no longer looked at.)"""
    return f"{RESERVED_PREFIX}{study_name}:{what}"


@contextmanager
def study_lock(storage: RDBStorage, name: str, timeout: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold a lock shared by every worker on `storage`: the study `name`, made while held.
    Study names are unique in a storage, so its creation is atomic, on SQLite and PostgreSQL
    alike. Interrupts wait while it is held (a lock left behind stops every worker); a worker
    killed outright leaves it, and the others stop after `timeout` saying how to remove it."""
    deadline = time.monotonic() + timeout
    while True:
        hold_interrupts()
        try:
            lock = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
            break
        except optuna.exceptions.DuplicatedStudyError:
            release_interrupts()
            if time.monotonic() > deadline:
                raise UserError(
                    f"signlab's lock study {name!r} (a lock, holding no trials; not one of your studies) has been held "
                    f"for {timeout:.0f} s: a worker died holding it. Remove that lock with `optuna delete-study "
                    f"--study-name {shlex.quote(name)} --storage URL` and start again") from None
            time.sleep(0.2)
        except BaseException:
            release_interrupts()
            raise
    try:
        yield
    finally:
        try:
            storage.delete_study(lock)
        finally:
            release_interrupts()


def _rdb_storage(url: str, heartbeat_interval: int, grace_period: int, on_failed_trial: FailedTrialCallback | None,
                 cap: int | None, engine: dict[str, Any], attempts: int = 5) -> CappedStorage:
    """RDBStorage, made under `setup_lock` for a SQLite file, and tried again when another
    worker is creating Optuna's tables in the same empty PostgreSQL database at this moment
    (it refuses the second CREATE with a duplicate key; once the first has finished, the
    tables are simply found)."""
    import sqlalchemy

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings(), setup_lock(url):
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return CappedStorage(url, cap=cap, trial_lock=_trial_lock, engine_kwargs=engine or None,
                                     heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                     heartbeat_stale_trial_callback=on_failed_trial)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if not duplicate_key(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


