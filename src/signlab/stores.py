"""Database URLs of both stores (MLflow's and Optuna's): secrets redacted, URLs checked and
explained in a line, and the lock beside a SQLite file while its tables are set up."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signlab import config
from signlab.errors import UserError

SETUP_WAIT_SECONDS = 120.0  # longest wait for another process setting up a SQLite database


def redact(url: str) -> str:
    """A URL without secrets: the password (user:***@), a token standing alone before the
    host of an http(s) URL (***@), and password/token query parameters."""
    url = re.sub(r"(//[^:/@]+:)[^/]*@", r"\1***@", url)  # up to the last @ before the path
    url = re.sub(r"^(https?://)[^:/@]+@", r"\1***@", url)
    return re.sub(r"(?i)([?&](?:password|passwd|pwd|token|secret|access_token)=)[^&]*", r"\1***", url)

def normalise(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (the driver we install)."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)

def parse(url: str, what: str, example: str):  # noqa: ANN202 (str, sqlalchemy URL)
    """The normalised URL and its parts, or a UserError if it is no database URL."""
    import sqlalchemy

    url = normalise(url)
    try:
        return url, sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"{what} {redact(url)!r} is not a database URL; expected e.g. {example} "
                        "or postgresql+psycopg://USER@HOST:5432/DATABASE") from None

def no_driver(what: str, url: str, parsed) -> UserError:  # noqa: ANN001 (sqlalchemy URL)
    return UserError(f"{what} {redact(url)}: no database driver for {parsed.drivername!r} is installed "
                     "(for PostgreSQL use postgresql+psycopg://, installed with signlab)")

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

_SOUND: set[tuple[str, int, int]] = set()  # (file, size, mtime) that passed the quick check here


def check_sqlite_file(url: str, what: str) -> None:
    """A SQLite file URL whose file exists must hold a sound database (SQLite's own quick
    check, read-only), or a UserError naming the file: checked before anything is written,
    so a damaged (truncated, overwritten) file is one line, not a traceback from deep in the
    first query, with nothing changed anywhere. Errors of opening (locked, no permission)
    are left to the caller's first real use, which says them."""
    import sqlite3

    path = sqlite_file(url)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return
    stat = path.stat()
    seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if seen in _SOUND:  # checked in this process and unchanged since (the CLI checks, then the store)
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as con:
            verdict = con.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.OperationalError:
        return
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", "file is not a database"
        verdict = str(exc)
    if verdict == "ok":
        _SOUND.add(seen)
        return
    raise UserError(f"{what} SQLite file {path} is damaged, not a usable database: {' '.join(verdict.split())[:120]} "
                    "(nothing was changed)")

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

    url, parsed = parse(url, what, config.DEFAULT_TRACKING_URI)
    try:
        engine = sqlalchemy.create_engine(url)
    except ImportError:
        raise no_driver(what, url, parsed) from None
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


# What each database calls "another client inserted this key (or created this table) first".
UNIQUE_SQLSTATES = {"23505", "42P07", "42710"}  # PostgreSQL: unique_violation, duplicate_table, duplicate_object
SQLITE_UNIQUE = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
MYSQL_DUPLICATE_ENTRY = 1062


def _driver_errors(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, and the database driver's error each SQLAlchemy one wraps."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            yield orig
        current = current.__cause__ or current.__context__


def duplicate_key(exc: BaseException) -> bool:
    """Whether a store refused a write because the row (or table) already exists, by the
    driver's code: PostgreSQL's SQLSTATE, SQLite's extended error name, MySQL's error number.

    Through an MLflow server the cause is gone (the client gets the message, with the code of
    any bad request), so there, and only there, the driver's exception name in the message
    is what is left to go by."""
    for err in _driver_errors(exc):
        if getattr(err, "sqlstate", None) in UNIQUE_SQLSTATES:
            return True
        if getattr(err, "sqlite_errorname", None) in SQLITE_UNIQUE:
            return True
        if type(err).__module__.startswith(("MySQLdb", "pymysql")) and err.args and err.args[0] == MYSQL_DUPLICATE_ENTRY:
            return True
    causes = [e for e in _driver_errors(exc) if e is not exc]
    if not causes:  # a REST response: MLflow's server put the driver's error in the message
        return any(s in str(exc) for s in ("UniqueViolation", "UNIQUE constraint failed", "Duplicate entry"))
    return False
