"""Database URLs of both stores, without a server: secrets redacted wherever a URL is shown,
where a URL points said in words, and the SQLite file (and its set-up lock) found."""

from __future__ import annotations

import pytest
import sqlalchemy

from signlab.errors import UserError
from signlab.stores import check_database, lock_path, normalise, redact, sqlite_file, where


@pytest.mark.parametrize("url, shown", [
    ("postgresql://bob:s3cret@db.example:5432/optuna", "postgresql://bob:***@db.example:5432/optuna"),
    ("postgresql://bob:p@ss@host/db", "postgresql://bob:***@host/db"),  # an unencoded '@' in the password
    ("http://user:hunter2@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
    ("https://tok3n@mlflow.example/x", "https://***@mlflow.example/x"),  # a token standing alone
    ("sqlite:///x.db?password=abc&mode=ro", "sqlite:///x.db?password=***&mode=ro"),
    ("http://host:5000/?TOKEN=zz&a=1", "http://host:5000/?TOKEN=***&a=1"),
    ("postgresql://bob@host/db", "postgresql://bob@host/db"),  # nothing secret: unchanged
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
])
def test_redact_hides_passwords_and_tokens(url, shown):
    assert redact(url) == shown


def test_postgres_urls_mean_psycopg_3():
    assert normalise("postgres://a@b/c") == normalise("postgresql://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise("postgresql+psycopg2://a@b/c") == "postgresql+psycopg2://a@b/c"  # a driver named is kept


@pytest.mark.parametrize("url, file", [
    ("sqlite:///optuna.db", "optuna.db"),
    ("sqlite:////abs/x.db", "/abs/x.db"),
    ("sqlite://", None), ("sqlite:///:memory:", None),
    ("sqlite:///file:x.db?mode=ro&uri=true", None),  # SQLite's own URI form: opened read-only, never set up
    ("postgresql://u@h/d", None), ("not a url", None),
])
def test_the_sqlite_file_and_its_lock(url, file):
    assert (str(sqlite_file(url)) if sqlite_file(url) else None) == file
    assert (str(lock_path(url)) if lock_path(url) else None) == (f"{file}.lock" if file else None)


@pytest.mark.parametrize("url, words", [
    ("postgresql://bob:pw@10.0.0.1/optuna", "PostgreSQL at 10.0.0.1:5432, database optuna, user bob"),
    ("postgresql://h/d", "PostgreSQL at h:5432, database d"),
    ("mysql://u@h/d", "MySQL at h:3306, database d, user u"),
    ("sqlite:///a.db", "SQLite file a.db"),
    ("postgresql://bob:p@ss@host/db", "PostgreSQL at an unreadable address (write '@' in the password as %40)"),
])
def test_where_a_url_points(url, words):
    assert where(sqlalchemy.engine.make_url(normalise(url))) == words


@pytest.mark.parametrize("url, words", [
    ("not a url", "study storage 'not a url' is not a database URL; expected e.g. sqlite:///mlflow.db"),
    ("mysql://u:pw@127.0.0.1/x", "study storage mysql://u:***@127.0.0.1/x: no database driver for 'mysql'"),
    ("postgresql://u:pw@127.0.0.1:1/x", "cannot open study storage, PostgreSQL at 127.0.0.1:1, database x, user u: "
                                        "connection to server at \"127.0.0.1\", port 1 failed: Connection refused"),
    ("sqlite:////no/such/dir/x.db", "cannot open study storage, SQLite file /no/such/dir/x.db: unable to open database "
                                    "file (nothing was changed)"),
])
def test_a_database_that_cannot_be_opened_is_one_line_without_its_password(url, words):
    with pytest.raises(UserError) as info:
        check_database(url, "study storage")
    message = str(info.value)
    assert message.startswith(words) and "\n" not in message, message
    assert ":pw@" not in message


def test_a_database_that_opens_gives_its_normalised_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert check_database(url, "study storage") == url
    assert (tmp_path / "x.db").exists()


def test_a_damaged_sqlite_file_is_refused_unchanged(tmp_path):
    """`check_sqlite_file`: SQLite's own quick check, read-only; a sound, missing or empty file passes."""
    import sqlite3

    from signlab.stores import check_sqlite_file

    db = tmp_path / "mlflow.db"
    check_sqlite_file(f"sqlite:///{db}", "MLflow tracking store")  # none yet: it will be made
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
        con.executemany("INSERT INTO t VALUES (?)", [(str(i) * 100,) for i in range(2000)])
    con.close()
    check_sqlite_file(f"sqlite:///{db}", "MLflow tracking store")
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)
    before = db.read_bytes()
    with pytest.raises(UserError, match=rf"^MLflow tracking store SQLite file {db} is damaged, not a usable database: "
                                        r".*\(nothing was changed\)$"):
        check_sqlite_file(f"sqlite:///{db}", "MLflow tracking store")
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="file is not a database"):
        check_sqlite_file(f"sqlite:///{db}", "MLflow tracking store")


def _refused(url: str, statement: str) -> sqlalchemy.exc.DBAPIError:
    """The error a real database gives for `statement` after one row (k=1, v='a')."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP TABLE IF EXISTS dup_check"))
        conn.execute(sqlalchemy.text("CREATE TABLE dup_check (k INTEGER PRIMARY KEY, v VARCHAR(8) NOT NULL UNIQUE)"))
        conn.execute(sqlalchemy.text("INSERT INTO dup_check VALUES (1, 'a')"))
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(statement))
    except sqlalchemy.exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{statement} was accepted")


def check_duplicate_keys_by_code(url: str) -> None:
    """A duplicate key is recognised by the driver's code, also wrapped as MLflow's SQL store
    wraps it (`raise MlflowException(message=e, ...) from e`); a NOT NULL refusal is not one."""
    from mlflow.exceptions import MlflowException

    from signlab.stores import duplicate_key

    for statement in ("INSERT INTO dup_check VALUES (1, 'b')", "INSERT INTO dup_check VALUES (2, 'a')"):
        exc = _refused(url, statement)
        assert duplicate_key(exc)
        try:
            raise MlflowException(message=str(exc), error_code="BAD_REQUEST") from exc
        except MlflowException as wrapped:
            assert duplicate_key(wrapped)
    assert not duplicate_key(_refused(url, "INSERT INTO dup_check VALUES (3, NULL)"))


def test_a_duplicate_key_is_known_by_sqlites_code(tmp_path):
    check_duplicate_keys_by_code(f"sqlite:///{tmp_path / 'dup.db'}")


def test_a_rest_error_without_its_cause_goes_by_the_drivers_name_in_the_message():
    from mlflow.exceptions import MlflowException

    from signlab.stores import duplicate_key

    assert duplicate_key(MlflowException("(psycopg.errors.UniqueViolation) duplicate key value", error_code="BAD_REQUEST"))
    assert not duplicate_key(MlflowException("Run 'x' not found", error_code="RESOURCE_DOES_NOT_EXIST"))
