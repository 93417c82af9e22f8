"""`signlab server`: an MLflow tracking server with a database backend store and proxied
artifacts, bound to 127.0.0.1 unless told otherwise; with `--auth`, MLflow's basic-auth app
(users and passwords, an admin who manages them), and `signlab server users` for the team."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signlab import config
from signlab.errors import UserError
from signlab.stores import check_database, redact, sqlite_file

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ADMIN = "admin"
PASSWORD_ENV = "SIGNLAB_ADMIN_PASSWORD"
MIN_PASSWORD = 12  # MLflow's own rule (mlflow.utils.validation._validate_password)
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")


@dataclass(frozen=True)
class AuthFiles:
    """Where `--auth` keeps its state: the user database (a SQLAlchemy URL), MLflow's
    basic_auth.ini for it ($MLFLOW_AUTH_CONFIG_PATH) and the Flask secret key, the last two
    beside a SQLite user database (else in the current folder), readable by the owner only."""

    database: str
    config: Path
    secret_key: Path


def auth_files(backend_store_uri: str, auth_db: str | None) -> AuthFiles:
    """The user database is `auth_db` (a URL, or a path for SQLite), else mlflow-auth.db
    beside a SQLite backend store, else mlflow-auth.db in the current folder."""
    if auth_db is None:
        backend = sqlite_file(backend_store_uri)
        auth_db = str((backend.parent if backend else Path()) / "mlflow-auth.db")
    url = auth_db if "://" in auth_db else f"sqlite:///{Path(auth_db).resolve()}"
    database = sqlite_file(url)
    folder, stem = (database.parent, database.stem) if database else (Path(), "mlflow-auth")
    return AuthFiles(url, (folder / f"{stem}.ini").resolve(), (folder / f"{stem}.secret-key").resolve())


def _owner_only(path: Path, what: str) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(f"{path} ({what}) can be read by others (mode {mode:o}): `chmod 600 {path}`, "
                        "or delete it and a new one is made")


def secret_key(path: Path) -> str:
    """The Flask secret key MLflow's auth app signs its forms with: made once (mode 0600,
    created that way, never widened by the umask), then read back at every start, so
    sessions and CSRF tokens survive a restart and all workers agree."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _owner_only(path, "the server's secret key")
        key = path.read_text().strip()
        if not key:
            raise UserError(f"{path} (the server's secret key) is empty: delete it and a new one is made") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def write_auth_config(files: AuthFiles, default_permission: str) -> None:
    """MLflow's basic_auth.ini for this server, rewritten at each start (mode 0600: a
    database URL may hold a password). No admin password here: it travels in the
    environment, and MLflow uses it only to create the admin user."""
    text = ("[mlflow]\n"
            f"default_permission = {default_permission}\n"
            f"database_uri = {files.database.replace('%', '%%')}\n"  # configparser interpolates %
            f"admin_username = {ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    fd = os.open(files.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def check_password(password: str | None) -> str:
    """$SIGNLAB_ADMIN_PASSWORD, checked as MLflow would check it, before anything starts."""
    if not password:
        raise UserError(f"--auth needs the admin's password in ${PASSWORD_ENV} (at least {MIN_PASSWORD} "
                        "characters); nothing was started")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"${PASSWORD_ENV} is {len(password)} characters; MLflow needs at least {MIN_PASSWORD}; "
                        "nothing was started")
    return password


def check_admin_password(database_url: str, password: str) -> None:
    """MLflow reads the admin password only when it creates the admin user; later a different
    $SIGNLAB_ADMIN_PASSWORD would be ignored without a word. Refuse that instead."""
    import sqlalchemy
    from werkzeug.security import check_password_hash

    engine = sqlalchemy.create_engine(database_url)
    try:
        if not sqlalchemy.inspect(engine).has_table("users"):
            return
        with engine.connect() as connection:
            stored = connection.execute(sqlalchemy.text("SELECT password_hash FROM users WHERE username = :name"),
                                        {"name": ADMIN}).scalar()
    finally:
        engine.dispose()
    if stored is not None and not check_password_hash(stored, password):
        raise UserError(f"${PASSWORD_ENV} is not the password of '{ADMIN}' in {redact(database_url)} (MLflow sets it "
                        "only when it creates the user): use that one, or change it with MLflow's "
                        "users/update-password API; nothing was started")


def auth_environment(backend_store_uri: str, auth_db: str | None, default_permission: str, password: str,
                     echo: Callable[[str], None]) -> dict[str, str]:
    """Prepare `--auth` (user database, its config and secret key) and return the variables
    `mlflow server --app-name basic-auth` reads."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise UserError("--auth needs MLflow's auth extra: pip install 'mlflow[auth]' (Flask-WTF)")
    files = auth_files(backend_store_uri, auth_db)
    database = sqlite_file(files.database)
    if database is not None:  # password hashes: the owner's only, as SQLite's journals will be
        database.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(database, 0o600)
    files = AuthFiles(check_database(files.database, "user database (--auth-db)"), files.config, files.secret_key)
    check_admin_password(files.database, password)
    key = secret_key(files.secret_key)
    write_auth_config(files, default_permission)
    echo(f"authentication on: users in {redact(files.database)}, admin user '{ADMIN}' (its password from "
         f"${PASSWORD_ENV} when the user is first created), others {default_permission} by default")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(files.config), "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
            "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": key}


def serve_tracking(backend_store_uri: str, artifacts_destination: str, host: str, port: int, workers: int,
          allowed_hosts: str | None = None, echo: Callable[[str], None] = print, *, auth: bool = False,
          auth_db: str | None = None, default_permission: str = "EDIT", insecure: bool = False,
          admin_password: str | None = None) -> None:
    """Check the backend store answers, then become `mlflow server` (signals reach it
    directly). The backend store URI travels in $MLFLOW_BACKEND_STORE_URI, so its password
    is neither printed nor visible to `ps`; so do the admin password and the secret key."""
    if host not in LOOPBACK and not auth and not insecure:
        raise UserError(f"--host {host} without --auth would let anyone who can reach port {port} read, change "
                        "and delete every run and model: add --auth (docs/distributed.md), or --insecure if "
                        "only people you trust can reach this network")
    if auth:  # before anything is created
        admin_password = check_password(admin_password)
        if default_permission not in PERMISSIONS:
            raise UserError(f"--default-permission {default_permission}: choose one of {', '.join(PERMISSIONS)}")
    if backend_store_uri.startswith("sqlite:///"):
        Path(backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    backend = check_database(backend_store_uri, "MLflow backend store")
    search_path = os.pathsep.join([str(Path(sys.executable).parent), config.child_environment().get("PATH", "")])
    mlflow_cli = shutil.which("mlflow", path=search_path)
    if mlflow_cli is None:
        raise UserError("the `mlflow` command is not installed beside this Python")
    extra = auth_environment(backend, auth_db, default_permission, admin_password, echo) if auth else {}
    if host not in LOOPBACK:
        if auth:
            echo(f"note: listening on {host}: basic auth sends passwords with every request, readable on the "
                 "network without TLS: put a TLS reverse proxy in front (docs/distributed.md)")
        else:
            echo(f"warning: listening on {host} with --insecure: the MLflow server has no authentication; anyone "
                 "who can reach this port can read and change every run")
        if allowed_hosts is None:
            echo("note: MLflow answers only requests addressed to localhost or a private IP; workers that "
                 "use a host name need --allowed-hosts 'NAME:PORT'")
    echo(f"MLflow tracking server on http://{host}:{port}: backend store {redact(backend)}, "
         f"artifacts in {artifacts_destination}")
    echo(f"point workers at it: --tracking-uri http://{host}:{port} (or export MLFLOW_TRACKING_URI)"
         + ("; each with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" if auth else ""))
    sys.stdout.flush()
    env = config.child_environment(MLFLOW_BACKEND_STORE_URI=backend, **extra)
    args = [mlflow_cli, "server", "--artifacts-destination", artifacts_destination, "--host", host,
            "--port", str(port), "--workers", str(workers)]
    if auth:
        args += ["--app-name", "basic-auth"]
    if allowed_hosts:
        args += ["--allowed-hosts", allowed_hosts]
    os.execve(mlflow_cli, args, env)


# ---- `signlab server users`: the team's accounts, through the server's REST API --------------
def _users_api(tracking_uri: str, method: str, path: str, **kwargs: object) -> dict:
    """One call to MLflow's user API as $MLFLOW_TRACKING_USERNAME (an admin), or a UserError."""
    import requests  # not MLflow: the user API is plain REST, and importing MLflow takes seconds

    credentials = config.tracking_credentials()
    if credentials is None:
        raise UserError("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an admin's (e.g. admin and "
                        f"${PASSWORD_ENV}) to manage users")
    username, password = credentials
    url = tracking_uri.rstrip("/") + path
    try:
        answer = requests.request(method, url, auth=(username, password), timeout=30, **kwargs)
    except requests.RequestException as exc:
        raise UserError(f"MLflow tracking server {redact(tracking_uri)} does not answer ({type(exc).__name__}): "
                        "start it with `signlab server --auth` or fix --tracking-uri") from None
    if answer.status_code == 401:
        raise UserError(f"{redact(tracking_uri)} refused {username}'s credentials (401)")
    if answer.status_code == 403:
        raise UserError(f"{username} may not manage users on {redact(tracking_uri)} (403: an admin may)")
    if answer.status_code == 404:
        raise UserError(f"{redact(tracking_uri)} has no user API (404): was it started with --auth?")
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not answer.ok:
        message = str(body.get("message", answer.reason)).splitlines()[0].split(" Error: (")[0][:200]
        raise UserError(f"{redact(tracking_uri)} answered {answer.status_code}: {message}")
    return body


def add_user(tracking_uri: str, name: str, password: str) -> None:
    """Create user `name` (not an admin; it gets the server's default permission)."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is {len(password)} characters; MLflow needs at least {MIN_PASSWORD}")
    _users_api(tracking_uri, "POST", "/api/2.0/mlflow/users/create", json={"username": name, "password": password})


def list_users(tracking_uri: str) -> list[dict]:
    """Every user: `username` and `is_admin`."""
    return _users_api(tracking_uri, "GET", "/api/2.0/mlflow/users/list").get("users", [])
