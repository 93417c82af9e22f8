"""`signlab dashboard`: optuna-dashboard on a study storage, opened as signlab opens it
(so a wrong URL or a damaged file is one clear line), bound to 127.0.0.1 by default."""

from __future__ import annotations

from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from signlab.errors import UserError
from signlab.search.storage import open_storage
from signlab.serving.server import LOOPBACK
from signlab.stores import redact, sqlite_file


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as optuna-dashboard's own command serves (a page asks for
    several things at once)."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        """No line per request."""


def serve(storage_url: str, host: str, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve optuna-dashboard for the studies in `storage_url` on http://host:port/ until
    Ctrl-C or SIGTERM. A SQLite file that does not exist is refused (opening it would create
    an empty database), as is a port already taken."""
    import optuna_dashboard

    database = sqlite_file(storage_url)
    if database is not None and not database.is_file():
        raise UserError(f"no study storage at {database} (SQLite file not found): run a study first, "
                        "or pass --storage (or $SIGNLAB_STORAGE) naming the one it used")
    app = optuna_dashboard.wsgi(open_storage(storage_url))
    try:
        httpd = make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                        "(is another server using it? choose one with --port)") from None
    if host not in LOOPBACK:
        echo(f"warning: listening on {host}: optuna-dashboard has no authentication; anyone who can reach "
             "this port can read, annotate and delete the studies")
    echo(f"optuna-dashboard for {redact(storage_url)} on http://{host}:{port}/ (Ctrl-C stops it)")
    with httpd:
        try:
            httpd.serve_forever()
        except KeyboardInterrupt as exc:
            exc.add_note("dashboard stopped")
            raise
