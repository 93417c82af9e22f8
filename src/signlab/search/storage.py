"""Optuna storage: any SQLAlchemy URL, heartbeats on, passwords never shown."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from signlab.errors import UserError, hold_interrupts, release_interrupts

HEARTBEAT_SECONDS = 15  # a live trial beats this often...
GRACE_SECONDS = 60  # ...and is marked FAIL when silent this long (its worker died)
SETUP_WAIT_SECONDS = 120.0  # longest wait for another process setting up a SQLite database
LOCK_WAIT_SECONDS = 120.0  # longest wait for another worker's lock study

FailedTrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def redact(url: str) -> str:
    """A URL without secrets: the password (user:***@), a token standing alone before the
    host of an http(s) URL (***@), and password/token query parameters."""
    url = re.sub(r"(//[^:/@]+:)[^/]*@", r"\1***@", url)  # up to the last @ before the path
    url = re.sub(r"^(https?://)[^:/@]+@", r"\1***@", url)
    return re.sub(r"(?i)([?&](?:password|passwd|pwd|token|secret|access_token)=)[^&]*", r"\1***", url)


def normalise(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (the driver we install)."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def open_storage(url: str, heartbeat_interval: int = HEARTBEAT_SECONDS, grace_period: int = GRACE_SECONDS,
                 on_failed_trial: FailedTrialCallback | None = None) -> CappedStorage:
    """An RDBStorage with heartbeats: a trial whose worker died is failed (and handed to
    `on_failed_trial`). Errors say where the database is, without the password, and that
    nothing was changed."""
    url, parsed = _parse(url, "storage", "sqlite:///optuna.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own summary says what happened
    try:
        rdb = _rdb_storage(url, heartbeat_interval, grace_period, on_failed_trial)
    except ImportError:
        raise _no_driver("storage", url, parsed) from None
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
    _, parsed = _parse(url, "storage", "sqlite:///optuna.db")
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return UserError(f"study storage {where(parsed)} is not a usable Optuna database: {reason(cause)} "
                     "(nothing was changed)")


def _parse(url: str, what: str, example: str):  # noqa: ANN202 (str, sqlalchemy URL)
    """The normalised URL and its parts, or a UserError if it is no database URL."""
    import sqlalchemy

    url = normalise(url)
    try:
        return url, sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"{what} {redact(url)!r} is not a database URL; expected e.g. {example} "
                        "or postgresql+psycopg://USER@HOST:5432/DATABASE") from None


def _no_driver(what: str, url: str, parsed) -> UserError:  # noqa: ANN001 (sqlalchemy URL)
    return UserError(f"{what} {redact(url)}: no database driver for {parsed.drivername!r} is installed "
                     "(for PostgreSQL use postgresql+psycopg://, installed with signlab)")


class TrialCapReached(Exception):
    """No trial was made: the study already holds as many trials as its cap."""


class CappedStorage(RDBStorage):
    """RDBStorage that makes no trial past `cap` (trials of every state, all workers together).

    Optuna's MaxTrialsCallback counts when a trial ends, so two workers ending trials at the
    same moment both start one more and the study overshoots its cap. Here the count and the
    new trial are made under one lock per study instead, so the last slot goes to one worker;
    the others get TrialCapReached out of `study.optimize`. Optuna has no hook between its
    count and its insert, so this overrides RDBStorage's private `_create_new_trial`, the one
    method both RDBStorage and Optuna's cache in front of it call to make a trial."""

    cap: int | None = None

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if self.cap is None or template_trial is not None:  # a template: an enqueued or retried trial
            return super()._create_new_trial(study_id, template_trial)
        with study_lock(self, f"{self.get_study_name_from_id(study_id)}:trial-lock"):
            if self.get_n_trials(study_id) >= self.cap:
                raise TrialCapReached(f"the study holds its {self.cap} trials")
            return super()._create_new_trial(study_id)


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
                    f"the lock study {name!r} has been held for {timeout:.0f} s: a worker died holding it. "
                    f"Delete it with `optuna delete-study --study-name '{name}' --storage URL` and start again") from None
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


def _rdb_storage(url: str, heartbeat_interval: int, grace_period: int,
                 on_failed_trial: FailedTrialCallback | None, attempts: int = 5) -> CappedStorage:
    """RDBStorage, made under `setup_lock` for a SQLite file, and tried again when another
    worker is creating Optuna's tables in the same empty PostgreSQL database at this moment
    (it refuses the second CREATE with a duplicate key; once the first has finished, the
    tables are simply found)."""
    import sqlalchemy

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings(), setup_lock(url):
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return CappedStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                  heartbeat_stale_trial_callback=on_failed_trial)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            racing = "already exists" in str(exc) or "duplicate key" in str(exc)
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite file URL; None for any other URL (in memory, a server)."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(normalise(url))
    except sqlalchemy.exc.ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def lock_path(url: str) -> Path | None:
    """`<database file>.lock` for a SQLite file URL; None for any other URL."""
    database = sqlite_file(url)
    return None if database is None else Path(f"{database}.lock")


@contextmanager
def setup_lock(url: str, wait: float = SETUP_WAIT_SECONDS) -> Iterator[bool]:
    """Hold an exclusive lock on `<database>.lock`, beside a SQLite file, while this process
    creates or upgrades the database's tables: processes opening one new file at the same
    moment would each run the migrations and could break it for good. Yields whether a
    lock is held: not for other URLs (PostgreSQL has its own retries, a tracking server
    its own set-up) nor where no lock file can be made (a read-only folder, where no
    database can be created either). Waits at most `wait` s, then a UserError."""
    import fcntl

    path = lock_path(url)
    try:
        handle = open(path, "a") if path else None  # noqa: SIM115 (closed below)
    except OSError:
        handle = None
    if handle is None:
        yield False
        return
    with handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UserError(f"SQLite file {path.with_suffix('')}: another process has been setting it up "
                                    f"for {wait:.0f} s (it holds {path}); try again when it has finished, "
                                    "nothing was changed") from None
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_database(url: str, what: str) -> str:
    """Connect once to a database URL (normalised and returned), or a UserError saying
    where it is and why not, without the password."""
    import sqlalchemy

    url, parsed = _parse(url, what, "sqlite:///mlflow.db")
    try:
        engine = sqlalchemy.create_engine(url)
    except ImportError:
        raise _no_driver(what, url, parsed) from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise UserError(f"cannot open {what}, {where(parsed)}: {reason(exc)} (nothing was changed)") from None
    finally:
        engine.dispose()
    return url


def where(parsed) -> str:  # noqa: ANN001 (sqlalchemy URL)
    """'PostgreSQL at 127.0.0.1:5432, database optuna, user signlab' or the SQLite file."""
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    name = {"postgresql": "PostgreSQL", "mysql": "MySQL"}.get(backend, backend)
    if parsed.host and "@" in parsed.host:  # an '@' in the password, not %40-encoded
        return f"{name} at an unreadable address (write '@' in the password as %40)"
    user = f", user {parsed.username}" if parsed.username else ""
    port = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(backend, "default port")
    return f"{name} at {parsed.host or 'localhost'}:{port}, database {parsed.database}{user}"


def reason(exc: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's decorations or any password."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    text = re.sub(r"^\(\S+\)\s*", "", text)
    text = re.sub(r"\s*\(Background on this error at: \S+\)", "", text)
    text = text.replace("connection failed: ", "").replace("FATAL: ", "")
    return redact(text)
